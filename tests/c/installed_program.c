/* Built by tests/c/install_test.cmake against an installed duet (pkg-config flags only): loads a
 * model, generates one image and checks its PNG. */
#include <duet.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  duet_model* model = NULL;
  duet_error* err = NULL;
  if (duet_model_load(argv[1], NULL, &model, &err) != DUET_OK) {
    fprintf(stderr, "load: %s\n", duet_error_message(err));
    duet_error_free(err);
    return 1;
  }
  duet_generate_params gp = duet_generate_params_default();
  gp.prompt = "a coat";
  gp.steps = 3;
  gp.seed = 1;
  duet_result* res = NULL;
  if (duet_generate(model, &gp, NULL, NULL, &res, &err) != DUET_OK) {
    fprintf(stderr, "generate: %s\n", duet_error_message(err));
    duet_error_free(err);
    duet_model_free(model);
    return 1;
  }
  const uint8_t* png = NULL;
  size_t size = 0;
  const int ok =
      duet_result_png(res, 0, &png, &size) == DUET_OK && size > 8 && memcmp(png, "\x89PNG", 4) == 0;
  duet_result_free(res);
  duet_model_free(model);
  printf("installed duet.h program: %s\n", ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
