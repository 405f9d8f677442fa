// The broker URL parser and the fleet's encodings (docs/scale-out.md); the process-level fleet
// tests are tests/fleet/test_fleet.py (ctest Fleet.*).
#include <gtest/gtest.h>

#include "serve/broker_redis.h"
#include "serve/fleet_protocol.h"

namespace duet::serve {
namespace {

TEST(FleetBrokerUrl, ParsesHostPortAndDb) {
  auto u = parse_broker_url("redis://10.0.0.5:6380/2");
  ASSERT_TRUE(u.is_ok()) << u.status().to_string();
  EXPECT_EQ(u->host, "10.0.0.5");
  EXPECT_EQ(u->port, 6380);
  EXPECT_EQ(u->db, 2);
  auto d = parse_broker_url("redis://cache.internal");
  ASSERT_TRUE(d.is_ok());
  EXPECT_EQ(d->port, 6379);
  EXPECT_EQ(d->db, 0);
  EXPECT_TRUE(parse_broker_url("redis://h:1/").is_ok());
}

TEST(FleetBrokerUrl, BadUrlsNameTheProblem) {
  struct Case {
    const char* url;
    const char* why;
  } cases[] = {{"http://h:6379", "scheme"},
               {"h:6379", "scheme"},
               {"redis://", "no host"},
               {"redis://:6379", "no host"},
               {"redis://h:0", "port"},
               {"redis://h:65536", "port"},
               {"redis://h:x", "port"},
               {"redis://h:6379/db", "database"},
               {"redis://u:p@h:6379", "credentials"}};
  for (const auto& c : cases) {
    auto u = parse_broker_url(c.url);
    ASSERT_FALSE(u.is_ok()) << c.url;
    EXPECT_EQ(u.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(u.status().message().find(c.why), std::string::npos) << u.status().message();
    EXPECT_EQ(u.status().message().find('\n'), std::string::npos);
  }
}

TEST(FleetBrokerUrl, UnreachableBrokerIsAnErrorWithinTheTimeout) {
  auto u = parse_broker_url("redis://127.0.0.1:1");
  ASSERT_TRUE(u.is_ok());
  auto c = RedisConn::connect(*u, std::chrono::milliseconds(500));
  ASSERT_FALSE(c.is_ok());
  EXPECT_NE(c.status().message().find("unreachable"), std::string::npos) << c.status().message();
}

TEST(FleetProtocol, RequestRoundTripsWithImages) {
  ImageRequest r;
  r.prompt = "a \"quoted\" prompt";
  r.negative_prompt = "blur";
  r.n = 3;
  r.width = 32;
  r.height = 16;
  r.steps = 7;
  r.sampler = "ddim";
  r.cfg_scale = 2.5f;
  r.seed = 1234567890123;
  r.karras = true;
  r.cfg_sigma_lo = 0.5;
  r.cfg_sigma_hi = 3.0;
  r.init_image = std::make_shared<std::vector<float>>(std::vector<float>{-1.f, 0.25f, 1.f});
  r.mask = std::make_shared<std::vector<float>>(std::vector<float>{0.f, 1.f});
  r.strength = 0.6;
  r.cache = *parse_cache_spec("block:2,1,0.123456789012345,0.1,0.9");
  auto back = fleet::request_from_json(fleet::request_to_json(r));
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(back->prompt, r.prompt);
  EXPECT_EQ(back->negative_prompt, r.negative_prompt);
  EXPECT_EQ(back->n, 3);
  EXPECT_EQ(back->width, 32);
  EXPECT_EQ(back->steps, 7);
  EXPECT_EQ(back->sampler, "ddim");
  EXPECT_EQ(back->cfg_scale, 2.5f);
  EXPECT_EQ(back->seed, r.seed);
  EXPECT_TRUE(back->karras);
  EXPECT_EQ(back->cfg_sigma_hi, 3.0);
  ASSERT_TRUE(back->init_image && back->mask);
  EXPECT_EQ(*back->init_image, *r.init_image);
  EXPECT_EQ(*back->mask, *r.mask);
  EXPECT_DOUBLE_EQ(back->strength, 0.6);
  EXPECT_EQ(back->cache.mode, CacheMode::kBlock);
  EXPECT_EQ(back->cache.first, 2);
  EXPECT_EQ(back->cache.last, 1);
  EXPECT_EQ(back->cache.threshold, 0.123456789012345);  // exact: shortest round-trip text
  EXPECT_EQ(back->cache.end, 0.9);
  EXPECT_FALSE(fleet::request_from_json("{\"prompt\":1}").is_ok());
  EXPECT_FALSE(fleet::request_from_json("nope").is_ok());
}

TEST(FleetProtocol, ModelDescriptionRoundTrips) {
  EngineInfo i;
  i.model = "m";
  i.samplers = {"ddim", "euler"};
  i.max_n = 5;
  auto back = fleet::info_from_json(fleet::info_to_json(i));
  ASSERT_TRUE(back.is_ok());
  EXPECT_EQ(back->model, "m");
  EXPECT_EQ(back->samplers, i.samplers);
  EXPECT_EQ(back->max_n, 5);
  EXPECT_FALSE(fleet::info_from_json("{}").is_ok());
}

}  // namespace
}  // namespace duet::serve
