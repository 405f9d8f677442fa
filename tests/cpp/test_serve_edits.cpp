// POST /v1/images/edits (OpenAI's multipart img2img) and img2img through /v1/jobs, against a real
// server with the fake engine (pixels that are a function of every input): happy paths, and
// every bad input answered 400 naming the field.
#include <gtest/gtest.h>

#include "test_serve_img_util.h"

#ifdef DUET_TEST_HAVE_HTTP

namespace duet::testing {
namespace {

using Form = httplib::MultipartFormDataItems;

Form edit_form(const std::string& png, const std::string& strength = "0.5") {
  return {file_part("image", png),
          text_part("prompt", "a red coat"),
          text_part("n", "2"),
          text_part("response_format", "b64_json"),
          text_part("steps", "3"),
          text_part("seed", "11"),
          text_part("strength", strength)};
}

TEST(ServeEdits, MultipartImg2ImgAnswersLikeGenerations) {
  auto s = TestServer::start();
  ASSERT_TRUE(s);
  auto c = s->client();
  const std::string png = gradient_png(16, 24, 3);
  auto r = c->Post("/v1/images/edits", edit_form(png));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  json j = parse_or_null(r->body);
  ASSERT_EQ(j["data"].size(), 2u);
  const PngImage out = png_of(unb64(j["data"][0]["b64_json"]));
  EXPECT_EQ(out.width, 16);  // the size defaults to the image's
  EXPECT_EQ(out.height, 24);
  const std::string* params = out.find_text("parameters");
  ASSERT_NE(params, nullptr);
  EXPECT_NE(params->find("Denoising strength: 0.50"), std::string::npos) << *params;
  EXPECT_EQ(j["duet"]["request"]["strength"], 0.5);
  EXPECT_EQ(j["duet"]["request"]["init_image"], true);
  EXPECT_EQ(j["duet"]["request"]["size"], "16x24");

  // Deterministic, and every input matters: strength, the image, a mask.
  auto again = c->Post("/v1/images/edits", edit_form(png));
  ASSERT_EQ(again->status, 200);
  EXPECT_EQ(parse_or_null(again->body)["data"], j["data"]);
  auto other_strength = c->Post("/v1/images/edits", edit_form(png, "0.8"));
  ASSERT_EQ(other_strength->status, 200);
  EXPECT_NE(parse_or_null(other_strength->body)["data"], j["data"]);
  auto other_image = c->Post("/v1/images/edits", edit_form(gradient_png(16, 24, 1)));
  ASSERT_EQ(other_image->status, 200) << other_image->body;  // gray is converted to RGB
  EXPECT_NE(parse_or_null(other_image->body)["data"], j["data"]);
  Form masked = edit_form(png);
  masked.push_back(file_part("mask", make_png(16, 24, 4, [](int x, int, int c) {
                               return c < 3 ? 0 : (x < 8 ? 0 : 255);  // left half transparent
                             })));
  auto m = c->Post("/v1/images/edits", masked);
  ASSERT_EQ(m->status, 200) << m->body;
  json mj = parse_or_null(m->body);
  EXPECT_EQ(mj["duet"]["request"]["mask"], true);
  EXPECT_NE(mj["data"], j["data"]);

  // An explicit size must match the image; "image[]" (the openai library's array form) works.
  Form sized = edit_form(png);
  sized.push_back(text_part("size", "16x24"));
  sized[0].name = "image[]";
  EXPECT_EQ(c->Post("/v1/images/edits", sized)->status, 200);
}

TEST(ServeEdits, JobsTakeTheFormAndBase64Json) {
  auto s = TestServer::start();
  ASSERT_TRUE(s);
  auto c = s->client();
  const std::string png = gradient_png(16, 16, 3);
  auto sync = c->Post("/v1/images/edits", edit_form(png));
  ASSERT_EQ(sync->status, 200);
  const std::string first = parse_or_null(sync->body)["data"][0]["b64_json"];

  auto wait_png = [&](const httplib::Result& r) -> std::string {
    EXPECT_TRUE(r && r->status == 202) << (r ? r->body : "");
    if (!r || r->status != 202) return "";
    const std::string id = parse_or_null(r->body)["id"];
    for (int i = 0; i < 500; ++i) {
      json j = parse_or_null(c->Get("/v1/jobs/" + id)->body);
      if (j["state"] == "succeeded") {
        EXPECT_EQ(j["request"]["strength"], 0.5);
        return c->Get("/v1/jobs/" + id + "/images/0.png")->body;
      }
      if (j["state"] != "queued" && j["state"] != "running") {
        ADD_FAILURE() << j.dump();
        return "";
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return "";
  };
  EXPECT_EQ(b64(wait_png(c->Post("/v1/jobs", edit_form(png)))), first);
  const std::string body = R"({"prompt":"a red coat","n":2,"steps":3,"seed":11,"strength":0.5,)"
                           R"("image":"data:image/png;base64,)" +
                           b64(png) + "\"}";
  EXPECT_EQ(b64(wait_png(c->Post("/v1/jobs", body, "application/json"))), first);
}

TEST(ServeEdits, BadInputsName400Fields) {
  auto s = TestServer::start();
  ASSERT_TRUE(s);
  auto c = s->client();
  const std::string png = gradient_png(16, 16, 3);
  auto expect_400 = [&](const httplib::Result& r, const std::string& param, const char* what) {
    ASSERT_TRUE(r) << what;
    EXPECT_EQ(r->status, 400) << what << ": " << r->body;
    EXPECT_EQ(error_param(r->body), param) << what << ": " << r->body;
  };
  auto without = [&](const std::string& name) {
    Form f = edit_form(png);
    f.erase(std::remove_if(f.begin(), f.end(), [&](const auto& p) { return p.name == name; }),
            f.end());
    return f;
  };
  auto with = [&](Form f, httplib::MultipartFormData part) {
    for (auto& p : f)
      if (p.name == part.name) {
        p = part;
        return f;
      }
    f.push_back(part);
    return f;
  };
  expect_400(c->Post("/v1/images/edits", without("image")), "image", "missing image");
  expect_400(c->Post("/v1/images/edits", without("prompt")), "prompt", "missing prompt");
  expect_400(c->Post("/v1/images/edits", with(edit_form(png), file_part("image", "GIF89a..."))),
             "image", "not a PNG");
  expect_400(
      c->Post("/v1/images/edits", with(edit_form(png), file_part("image", png.substr(0, 40)))),
      "image", "truncated PNG");
  expect_400(c->Post("/v1/images/edits", with(edit_form(png), file_part("image", ""))), "image",
             "empty image");
  expect_400(c->Post("/v1/images/edits", R"({"prompt":"x"})", "application/json"), "image",
             "JSON instead of multipart");
  expect_400(c->Post("/v1/images/edits", "--nope\r\nContent-Disposition: form-data\r\n\r\nx",
                     "multipart/form-data; boundary=zzz"),
             "multipart", "malformed multipart");
  expect_400(c->Post("/v1/images/edits", edit_form(png, "1.5")), "strength", "strength > 1");
  expect_400(c->Post("/v1/images/edits", edit_form(png, "-0.1")), "strength", "strength < 0");
  expect_400(c->Post("/v1/images/edits", edit_form(png, "half")), "strength", "strength text");
  expect_400(c->Post("/v1/images/edits", with(edit_form(png), text_part("n", "two"))), "n",
             "n text");
  expect_400(c->Post("/v1/images/edits", with(edit_form(png), text_part("size", "32x32"))), "image",
             "image size != size");
  expect_400(c->Post("/v1/images/edits", with(edit_form(png), text_part("size", "12x12"))), "size",
             "size off the stride");
  expect_400(c->Post("/v1/images/edits", with(edit_form(png), text_part("sampler", "Euler q"))),
             "sampler", "unknown sampler");
  expect_400(c->Post("/v1/images/edits", with(edit_form(png), text_part("colour", "red"))),
             "colour", "unknown field");
  expect_400(
      c->Post("/v1/images/edits", with(edit_form(png), file_part("mask", gradient_png(8, 8, 4)))),
      "mask", "mask of another size");
  expect_400(c->Post("/v1/images/edits", with(edit_form(png), file_part("mask", "not a png"))),
             "mask", "mask not a PNG");
  expect_400(c->Post("/v1/images/edits", with(edit_form(png), file_part("prompt", "a coat"))),
             "prompt", "a text field sent as a file");
  Form twice = edit_form(png);
  twice.push_back(file_part("image", png));
  expect_400(c->Post("/v1/images/edits", twice), "image", "two images");
  expect_400(c->Post("/v1/images/edits", with(edit_form(png), text_part("response_format", "url"))),
             "response_format", "url");
  // Form parts are raw bytes: names and text that are not UTF-8 are refused by name, not echoed
  // into a JSON error or a job (nlohmann::json would throw on dumping them: a 500).
  expect_400(c->Post("/v1/images/edits", with(edit_form(png), text_part("x\xff\xfe", "1"))),
             "multipart", "field name not UTF-8");
  expect_400(
      c->Post("/v1/images/edits", with(edit_form(png), text_part("prompt", "a \xc3\x28 coat"))),
      "prompt", "prompt not UTF-8");
  expect_400(c->Post("/v1/images/edits", with(edit_form(png), text_part("prompt", "\xed\xa0\x80"))),
             "prompt", "a UTF-16 surrogate in UTF-8");
  expect_400(c->Post("/v1/images/edits", with(edit_form(png), text_part("prompt", "\xc0\xaf"))),
             "prompt", "an overlong encoding");
  ASSERT_EQ(
      c->Post("/v1/images/edits",
              with(edit_form(png), text_part("prompt", "a caf\xc3\xa9 coat \xf0\x9f\x91\x9f")))
          ->status,
      200);
  // img2img fields in plain generations, and bad JSON images in jobs.
  expect_400(
      c->Post("/v1/images/generations", R"({"prompt":"x","strength":0.5})", "application/json"),
      "strength", "strength in generations");
  expect_400(c->Post("/v1/jobs", R"({"prompt":"x","strength":0.5})", "application/json"),
             "strength", "strength without image");
  expect_400(c->Post("/v1/jobs", R"({"prompt":"x","image":"%%%"})", "application/json"), "image",
             "image not base64");
  expect_400(c->Post("/v1/jobs", R"({"prompt":"x","image":42})", "application/json"), "image",
             "image not a string");
  // Short data: URLs (found by fuzz_serve_frontends: "data:," underflowed the ";base64" check).
  for (const char* url : {"data:,AAAA", "data:", "data:;base64", "data:x,AAAA", "data:;base64,"})
    expect_400(c->Post("/v1/jobs", std::string(R"({"prompt":"x","image":")") + url + "\"}",
                       "application/json"),
               "image", url);
  expect_400(
      c->Post("/v1/jobs", R"({"prompt":"x","image":")" + b64("hello") + "\"}", "application/json"),
      "image", "base64 of something else");
  expect_400(
      c->Post("/v1/jobs", R"({"prompt":"x","mask":")" + b64(png) + "\"}", "application/json"),
      "mask", "mask without image");
  expect_400(
      c->Post("/v1/images/generations", R"({"prompt":"x","karras":"yes"})", "application/json"),
      "karras", "karras not a boolean");
  // The server is still up and serving.
  EXPECT_EQ(c->Post("/v1/images/edits", edit_form(png))->status, 200);
}

TEST(ServeEdits, ApiKeyApplies) {
  ServeOptions o;
  o.api_key = "k3y";
  auto s = TestServer::start(o);
  ASSERT_TRUE(s);
  auto c = s->client();
  EXPECT_EQ(c->Post("/v1/images/edits", edit_form(gradient_png(16, 16, 3)))->status, 401);
  c->set_bearer_token_auth("k3y");
  EXPECT_EQ(c->Post("/v1/images/edits", edit_form(gradient_png(16, 16, 3)))->status, 200);
}

}  // namespace
}  // namespace duet::testing

#endif
