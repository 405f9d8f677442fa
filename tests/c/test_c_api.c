/* The C ABI (duet.h) from a C11 program: loading, generation, reusable prompt encodings, cancel,
 * every argument error by field name, duet_denoise, and concurrent calls on one model.
 *   test_c_api MODEL_DIR   (the tiny-demo fixture: a few steps take milliseconds) */
#include <duet.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_failures = 0;
#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++g_failures;                                                            \
    }                                                                          \
  } while (0)

static const char* g_dir = NULL;

/* Generation must fail with DUET_ERR_INVALID_ARGUMENT and a message containing `needle`. */
static void expect_invalid(duet_model* m, const duet_generate_params* gp, const char* needle) {
  duet_result* res = (duet_result*)1;
  duet_error* err = NULL;
  const duet_status st = duet_generate(m, gp, NULL, NULL, &res, &err);
  if (st != DUET_ERR_INVALID_ARGUMENT || res != NULL || !strstr(duet_error_message(err), needle)) {
    fprintf(stderr, "expected an invalid-argument error naming '%s', got %d: %s\n", needle, (int)st,
            duet_error_message(err));
    ++g_failures;
  }
  duet_error_free(err);
  duet_result_free(res == (duet_result*)1 ? NULL : res);
}

static duet_generate_params base_params(void) {
  duet_generate_params gp = duet_generate_params_default();
  gp.prompt = "a photo of a sneaker";
  gp.steps = 4;
  gp.seed = 7;
  return gp;
}

static duet_result* must_generate(duet_model* m, const duet_generate_params* gp) {
  duet_result* res = NULL;
  duet_error* err = NULL;
  if (duet_generate(m, gp, NULL, NULL, &res, &err) != DUET_OK) {
    fprintf(stderr, "generate failed: %s\n", duet_error_message(err));
    ++g_failures;
    duet_error_free(err);
    return NULL;
  }
  return res;
}

static int same_png(const duet_result* a, const duet_result* b, int index) {
  const uint8_t *pa, *pb;
  size_t na, nb;
  if (duet_result_png(a, index, &pa, &na) != DUET_OK) return 0;
  if (duet_result_png(b, index, &pb, &nb) != DUET_OK) return 0;
  return na == nb && memcmp(pa, pb, na) == 0;
}

static void test_library(void) {
  CHECK(strcmp(duet_version(), "0.1") == 0);
  CHECK(duet_abi_version() == DUET_ABI_VERSION);
  CHECK(duet_sampler_count() >= 5);
  int found = 0;
  for (int i = 0; i < duet_sampler_count(); ++i)
    found += strcmp(duet_sampler_name(i), "dpmpp_2m") == 0;
  CHECK(found == 1);
  CHECK(duet_sampler_name(-1) == NULL && duet_sampler_name(duet_sampler_count()) == NULL);
  CHECK(strcmp(duet_status_name(DUET_ERR_CANCELLED), "cancelled") == 0);
  CHECK(duet_error_code(NULL) == DUET_OK && strcmp(duet_error_message(NULL), "") == 0);
  duet_error_free(NULL);
  duet_model_free(NULL);
  duet_prompt_free(NULL);
  duet_result_free(NULL);
}

static void test_load_errors(void) {
  duet_model* m = (duet_model*)1;
  duet_error* err = NULL;
  duet_status st = duet_model_load("/nonexistent/model-dir", NULL, &m, &err);
  CHECK(st != DUET_OK && m == NULL);
  CHECK(strstr(duet_error_message(err), "/nonexistent/model-dir") != NULL);
  duet_error_free(err);

  duet_model_params mp = duet_model_params_default();
  mp.precision = "fp64";
  err = NULL;
  st = duet_model_load(g_dir, &mp, &m, &err);
  CHECK(st == DUET_ERR_INVALID_ARGUMENT && m == NULL);
  CHECK(strstr(duet_error_message(err), "duet_model_params.precision") != NULL);
  duet_error_free(err);

  mp = duet_model_params_default();
  mp.threads = -1;
  err = NULL;
  CHECK(duet_model_load(g_dir, &mp, &m, &err) == DUET_ERR_INVALID_ARGUMENT);
  CHECK(strstr(duet_error_message(err), "duet_model_params.threads") != NULL);
  duet_error_free(err);

  mp = duet_model_params_default();
  mp.backend = "gpu";
  err = NULL;
  CHECK(duet_model_load(g_dir, &mp, &m, &err) == DUET_ERR_INVALID_ARGUMENT);
  CHECK(strstr(duet_error_message(err), "duet_model_params.backend") != NULL);
  duet_error_free(err);

  err = NULL;
  CHECK(duet_model_load(NULL, NULL, &m, &err) == DUET_ERR_INVALID_ARGUMENT);
  CHECK(strstr(duet_error_message(err), "path") != NULL);
  duet_error_free(err);
  /* err may be NULL: the code alone reports the failure. */
  CHECK(duet_model_load("/nonexistent/model-dir", NULL, &m, NULL) != DUET_OK);
}

static void test_generate(duet_model* m) {
  duet_generate_params gp = base_params();
  gp.num_images = 2;
  duet_result* a = must_generate(m, &gp);
  duet_result* b = must_generate(m, &gp);
  gp.seed = 8;
  duet_result* c = must_generate(m, &gp);
  if (!a || !b || !c) return;
  CHECK(duet_result_count(a) == 2);
  const int C = duet_result_channels(a), H = duet_result_height(a), W = duet_result_width(a);
  CHECK(C == duet_model_channels(m) && H == duet_model_height(m) && W == duet_model_width(m));
  const float* x = duet_result_images(a);
  float lo = 1, hi = -1;
  for (int i = 0; i < 2 * C * H * W; ++i) {
    lo = x[i] < lo ? x[i] : lo;
    hi = x[i] > hi ? x[i] : hi;
  }
  CHECK(lo >= -1.0f && hi <= 1.0f && hi > lo);
  int rows = 0, cols = 0, pc = 0;
  const uint8_t* u8 = duet_result_image_u8(a, 1, &rows, &cols, &pc);
  CHECK(u8 != NULL && rows == H && (C == 1 || C == 3 ? cols == W && pc == C : cols == C * W));
  /* The 8-bit samples are the [-1, 1] floats mapped as the PNG stores them. */
  if (u8 && C == 1) {
    const float* x1 = x + C * H * W;
    int worst = 0;
    for (int i = 0; i < H * W; ++i) {
      const int want = (int)lrintf((x1[i] + 1.0f) * 0.5f * 255.0f);
      const int d = abs(want - (int)u8[i]);
      worst = d > worst ? d : worst;
    }
    CHECK(worst <= 1);
  }
  CHECK(duet_result_image_u8(a, 2, &rows, &cols, &pc) == NULL && rows == 0);
  const uint8_t* png = NULL;
  size_t size = 0;
  CHECK(duet_result_png(a, 0, &png, &size) == DUET_OK && size > 8 &&
        memcmp(png, "\x89PNG", 4) == 0);
  CHECK(duet_result_png(a, 5, &png, &size) == DUET_ERR_INVALID_ARGUMENT && png == NULL);
  CHECK(strstr(duet_result_parameters(a, 1), "Seed: 7") != NULL);
  CHECK(strstr(duet_result_parameters(a, 1), "Batch pos: 1") != NULL);
  CHECK(duet_result_parameters(a, 2) == NULL);
  CHECK(duet_result_seed(a) == 7 && duet_result_image_seed(a, 1) == 7);
  CHECK(duet_result_image_seed(a, 2) == -1);
  CHECK(duet_result_model_evaluations(a) == 4);
  CHECK(duet_result_refiner_evaluations(a) >= 1);
  CHECK(duet_result_timing(a, DUET_TIMING_DENOISE) > 0);
  CHECK(duet_result_timing(a, DUET_TIMING_TOTAL) >= duet_result_timing(a, DUET_TIMING_DENOISE));
  /* Same seed: the same bytes; another seed: other pixels. */
  CHECK(same_png(a, b, 0) && same_png(a, b, 1));
  CHECK(memcmp(duet_result_images(a), duet_result_images(c), sizeof(float) * C * H * W) != 0);
  duet_result_free(a);
  duet_result_free(b);
  duet_result_free(c);

  /* Random seed: reported, and >= 0. */
  gp = base_params();
  gp.seed = -1;
  duet_result* r = must_generate(m, &gp);
  if (r) CHECK(duet_result_seed(r) >= 0);
  duet_result_free(r);
}

static void test_prompt_encodings(duet_model* m, duet_model* other) {
  duet_prompt *p = NULL, *neg = NULL, *foreign = NULL;
  duet_error* err = NULL;
  CHECK(duet_prompt_encode(m, "a photo of a sneaker", &p, &err) == DUET_OK);
  CHECK(duet_prompt_encode(m, "blurry", &neg, &err) == DUET_OK);
  CHECK(duet_prompt_encode(other, "a photo of a sneaker", &foreign, &err) == DUET_OK);
  CHECK(strcmp(duet_prompt_text(p), "a photo of a sneaker") == 0);
  duet_prompt_free(p); /* the call below sets p to NULL on its error */
  CHECK(duet_prompt_encode(m, NULL, &p, &err) == DUET_ERR_INVALID_ARGUMENT && p == NULL);
  CHECK(strstr(duet_error_message(err), "text") != NULL);
  duet_error_free(err);
  err = NULL;
  CHECK(duet_prompt_encode(m, "a photo of a sneaker", &p, &err) == DUET_OK);

  duet_generate_params gp = base_params();
  gp.num_images = 3;
  gp.negative_prompt = "blurry";
  duet_result* by_text = must_generate(m, &gp);
  gp.prompt = NULL;
  gp.prompt_encoding = p;
  duet_result* by_cond = must_generate(m, &gp); /* encoded prompt, negative as text */
  gp.negative_prompt = NULL;
  gp.negative_encoding = neg;
  duet_result* by_both = must_generate(m, &gp);
  duet_result* again = must_generate(m, &gp); /* the encodings are reusable */
  if (by_text && by_cond && by_both && again) {
    for (int i = 0; i < 3; ++i) {
      CHECK(same_png(by_text, by_cond, i));
      CHECK(same_png(by_text, by_both, i));
      CHECK(same_png(by_text, again, i));
    }
  }
  duet_result_free(by_text);
  duet_result_free(by_cond);
  duet_result_free(by_both);
  duet_result_free(again);

  gp = base_params();
  gp.prompt = NULL;
  gp.prompt_encoding = foreign;
  expect_invalid(m, &gp, "duet_generate_params.prompt_encoding was encoded by another model");
  gp.prompt_encoding = p;
  gp.negative_encoding = foreign;
  expect_invalid(m, &gp, "duet_generate_params.negative_encoding");
  gp.negative_encoding = neg;
  gp.negative_prompt = "blurry";
  expect_invalid(m, &gp, "at most one of duet_generate_params.negative_prompt");
  duet_prompt_free(p);
  duet_prompt_free(neg);
  duet_prompt_free(foreign);
}

struct cancel_state {
  int calls, steps_seen, stop_after;
};
static int on_progress(int step, int steps, void* user_data) {
  struct cancel_state* s = (struct cancel_state*)user_data;
  ++s->calls;
  s->steps_seen = steps;
  CHECK(step == s->calls);
  return step >= s->stop_after;
}

static void test_cancel(duet_model* m) {
  duet_generate_params gp = base_params();
  gp.steps = 6;
  struct cancel_state s = {0, 0, 2};
  duet_result* res = (duet_result*)1;
  duet_error* err = NULL;
  CHECK(duet_generate(m, &gp, on_progress, &s, &res, &err) == DUET_ERR_CANCELLED);
  CHECK(res == NULL && s.calls == 2 && s.steps_seen == 6);
  CHECK(strstr(duet_error_message(err), "cancelled after 2 of 6") != NULL);
  duet_error_free(err);
  /* A callback that never cancels sees every step and the generation completes. */
  s.calls = 0;
  s.stop_after = 1000;
  err = NULL;
  CHECK(duet_generate(m, &gp, on_progress, &s, &res, &err) == DUET_OK && s.calls == 6);
  duet_result_free(res);
}

static void test_argument_errors(duet_model* m) {
  duet_generate_params gp = base_params();
  duet_result* res = NULL;
  duet_error* err = NULL;
  CHECK(duet_generate(NULL, &gp, NULL, NULL, &res, &err) == DUET_ERR_INVALID_ARGUMENT);
  CHECK(strstr(duet_error_message(err), "model") != NULL);
  duet_error_free(err);
  err = NULL;
  CHECK(duet_generate(m, NULL, NULL, NULL, &res, &err) == DUET_ERR_INVALID_ARGUMENT);
  CHECK(strstr(duet_error_message(err), "params") != NULL);
  duet_error_free(err);
  err = NULL;
  CHECK(duet_generate(m, &gp, NULL, NULL, NULL, &err) == DUET_ERR_INVALID_ARGUMENT);
  CHECK(strstr(duet_error_message(err), "result") != NULL);
  duet_error_free(err);

  gp = base_params();
  gp.prompt = NULL;
  expect_invalid(m, &gp, "exactly one of duet_generate_params.prompt");
  const char* texts[2] = {"a coat", NULL};
  gp = base_params();
  gp.prompts = texts;
  expect_invalid(m, &gp, "exactly one of");
  gp = base_params();
  gp.prompt = NULL;
  gp.prompts = texts;
  gp.num_images = 2;
  expect_invalid(m, &gp, "duet_generate_params.prompts[1] is NULL");
  gp = base_params();
  gp.num_images = 0;
  expect_invalid(m, &gp, "duet_generate_params.num_images");
  gp = base_params();
  gp.num_images = 65;
  expect_invalid(m, &gp, "duet_generate_params.num_images");
  gp = base_params();
  gp.steps = 0;
  expect_invalid(m, &gp, "duet_generate_params.steps");
  gp = base_params();
  gp.sampler = "nope";
  expect_invalid(m, &gp, "duet_generate_params.sampler: unknown sampler 'nope'");
  gp = base_params();
  gp.sampler = "ddim";
  gp.karras = 1;
  expect_invalid(m, &gp, "duet_generate_params.karras");
  gp = base_params();
  gp.cfg_scale = NAN;
  expect_invalid(m, &gp, "duet_generate_params.cfg_scale");
  gp = base_params();
  gp.cfg_scale = 101;
  expect_invalid(m, &gp, "duet_generate_params.cfg_scale");
  gp = base_params();
  gp.seed = -2;
  expect_invalid(m, &gp, "duet_generate_params.seed");
  gp = base_params();
  gp.rng = "mt19937";
  expect_invalid(m, &gp, "duet_generate_params.rng");
  gp = base_params();
  gp.width = -4;
  expect_invalid(m, &gp, "duet_generate_params.width");
  gp = base_params();
  gp.height = 4096;
  expect_invalid(m, &gp, "duet_generate_params.height");
  gp = base_params();
  gp.width = duet_model_width(m) + 1;
  expect_invalid(m, &gp, "width");
  gp = base_params();
  gp.refine_mode = 9;
  expect_invalid(m, &gp, "duet_generate_params.refine_mode");
  gp = base_params();
  gp.refine_every = -2;
  expect_invalid(m, &gp, "duet_generate_params.refine_every");
  gp = base_params();
  gp.refine_mode = DUET_REFINE_STEPS;
  expect_invalid(m, &gp, "duet_generate_params.refine_steps");
  const int bad_steps[2] = {2, 0};
  gp = base_params();
  gp.refine_mode = DUET_REFINE_STEPS;
  gp.refine_steps = bad_steps;
  gp.num_refine_steps = 2;
  expect_invalid(m, &gp, "duet_generate_params.refine_steps[1]");
  const int far_steps[1] = {40};
  gp.refine_steps = far_steps;
  gp.num_refine_steps = 1;
  expect_invalid(m, &gp, "refine step 40 is outside");
  gp = base_params();
  gp.png_bit_depth = 12;
  expect_invalid(m, &gp, "duet_generate_params.png_bit_depth");
  gp = base_params();
  gp.cache = "fast";
  expect_invalid(m, &gp, "duet_generate_params.cache 'fast'");
  gp = base_params();
  gp.cache = "step:0";
  expect_invalid(m, &gp, "THRESH must be");
  /* The strength is checked before init_image (C*H*W floats) is read. */
  float init[4] = {0};
  gp = base_params();
  gp.init_image = init;
  gp.strength = 2;
  expect_invalid(m, &gp, "duet_generate_params.strength");
}

static void test_denoise(duet_model* m) {
  const int B = 2, C = duet_model_channels(m), H = duet_model_height(m), W = duet_model_width(m);
  const int n = B * C * H * W;
  float* x = malloc(sizeof(float) * n);
  float* buf = malloc(sizeof(float) * n * 5);
  float *eps_s = buf, *eps_d = buf + n, *eps = buf + 2 * n, *eps_s2 = buf + 3 * n,
        *eps2 = buf + 4 * n;
  float alpha[2] = {-1, -1}, t[2] = {500.0f, 250.5f};
  for (int i = 0; i < n; ++i) x[i] = sinf(0.37f * (float)i);
  duet_prompt* p = NULL;
  duet_error* err = NULL;
  CHECK(duet_prompt_encode(m, "a coat", &p, &err) == DUET_OK);
  CHECK(duet_denoise(m, x, B, 0, 0, t, p, 1, eps_s, eps_d, alpha, eps, &err) == DUET_OK);
  CHECK(alpha[0] > 0 && alpha[0] < 1 && alpha[1] > 0 && alpha[1] < 1 && alpha[0] != alpha[1]);
  double diff = 0;
  for (int i = 0; i < n; ++i) diff += fabs(eps[i] - eps_s[i]);
  CHECK(diff > 0);
  CHECK(duet_denoise(m, x, B, H, W, t, p, 0, eps_s2, eps_d, alpha, eps2, &err) == DUET_OK);
  CHECK(memcmp(eps_s, eps_s2, sizeof(float) * n) == 0); /* the backbone does not see refine */
  CHECK(memcmp(eps2, eps_s2, sizeof(float) * n) == 0);  /* without refine eps = eps_s */
  CHECK(alpha[0] == 0 && alpha[1] == 0 && eps_d[0] == 0 && eps_d[n - 1] == 0);
  /* Outputs may be NULL. */
  CHECK(duet_denoise(m, x, B, 0, 0, t, p, 1, NULL, NULL, NULL, eps2, &err) == DUET_OK);
  CHECK(memcmp(eps, eps2, sizeof(float) * n) == 0);

  CHECK(duet_denoise(m, NULL, B, 0, 0, t, p, 1, eps_s, NULL, NULL, NULL, &err) ==
        DUET_ERR_INVALID_ARGUMENT);
  CHECK(strstr(duet_error_message(err), "x is NULL") != NULL);
  duet_error_free(err);
  err = NULL;
  CHECK(duet_denoise(m, x, 0, 0, 0, t, p, 1, eps_s, NULL, NULL, NULL, &err) ==
        DUET_ERR_INVALID_ARGUMENT);
  CHECK(strstr(duet_error_message(err), "batch") != NULL);
  duet_error_free(err);
  err = NULL;
  CHECK(duet_denoise(m, x, B, H + 1, 0, t, p, 1, eps_s, NULL, NULL, NULL, &err) ==
        DUET_ERR_INVALID_ARGUMENT);
  CHECK(strstr(duet_error_message(err), "height") != NULL);
  duet_error_free(err);
  err = NULL;
  t[1] = NAN;
  CHECK(duet_denoise(m, x, B, 0, 0, t, p, 1, eps_s, NULL, NULL, NULL, &err) ==
        DUET_ERR_INVALID_ARGUMENT);
  CHECK(strstr(duet_error_message(err), "t[1]") != NULL);
  duet_error_free(err);
  err = NULL;
  CHECK(duet_denoise(m, x, B, 0, 0, t, NULL, 1, eps_s, NULL, NULL, NULL, &err) ==
        DUET_ERR_INVALID_ARGUMENT);
  CHECK(strstr(duet_error_message(err), "prompt") != NULL);
  duet_error_free(err);
  duet_prompt_free(p);
  free(x);
  free(buf);
}

struct thread_job {
  duet_model* model;
  int64_t seed;
  duet_result* result;
};
static void* generate_thread(void* arg) {
  struct thread_job* j = (struct thread_job*)arg;
  duet_generate_params gp = base_params();
  gp.seed = j->seed;
  gp.steps = 6;
  duet_error* err = NULL;
  if (duet_generate(j->model, &gp, NULL, NULL, &j->result, &err) != DUET_OK) j->result = NULL;
  duet_error_free(err);
  return NULL;
}

/* Four threads generate on one model at once; each gets what it gets alone. */
static void test_concurrent(duet_model* m) {
  enum { kThreads = 4 };
  struct thread_job jobs[kThreads];
  pthread_t th[kThreads];
  for (int i = 0; i < kThreads; ++i) {
    jobs[i].model = m;
    jobs[i].seed = 100 + i % 2;
    jobs[i].result = NULL;
    CHECK(pthread_create(&th[i], NULL, generate_thread, &jobs[i]) == 0);
  }
  for (int i = 0; i < kThreads; ++i) pthread_join(th[i], NULL);
  for (int i = 0; i < kThreads; ++i) {
    struct thread_job solo = {m, 100 + i % 2, NULL};
    generate_thread(&solo);
    CHECK(jobs[i].result != NULL && solo.result != NULL);
    if (jobs[i].result && solo.result) CHECK(same_png(jobs[i].result, solo.result, 0));
    duet_result_free(solo.result);
  }
  for (int i = 0; i < kThreads; ++i) duet_result_free(jobs[i].result);
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_c_api MODEL_DIR\n");
    return 2;
  }
  g_dir = argv[1];
  test_library();
  test_load_errors();
  duet_model_params mp = duet_model_params_default();
  mp.threads = 1;
  duet_model *m = NULL, *other = NULL;
  duet_error* err = NULL;
  if (duet_model_load(g_dir, &mp, &m, &err) != DUET_OK ||
      duet_model_load(g_dir, &mp, &other, &err) != DUET_OK) {
    fprintf(stderr, "cannot load %s: %s\n", g_dir, duet_error_message(err));
    return 1;
  }
  CHECK(strcmp(duet_model_precision(m), "f32") == 0);
  CHECK(duet_model_parameters(m) > 0 && strlen(duet_model_name(m)) > 0);
  test_generate(m);
  test_prompt_encodings(m, other);
  test_cancel(m);
  test_argument_errors(m);
  test_denoise(m);
  test_concurrent(m);
  duet_model_free(other);
  duet_model_free(m);
  if (g_failures) {
    fprintf(stderr, "%d check(s) failed\n", g_failures);
    return 1;
  }
  printf("test_c_api: all checks passed\n");
  return 0;
}
