/* duet.h — the C ABI of libduet (C11; no C++ types cross it). See docs/c-api.md.
 *
 *   duet_model_params mp = duet_model_params_default();
 *   duet_model* model = NULL;
 *   duet_error* err = NULL;
 *   if (duet_model_load("models/fashion-duet", &mp, &model, &err) != DUET_OK) {
 *     fprintf(stderr, "%s\n", duet_error_message(err));
 *     duet_error_free(err);
 *     return 1;
 *   }
 *   duet_generate_params gp = duet_generate_params_default();
 *   gp.prompt = "a photo of a sneaker";
 *   gp.seed = 7;
 *   duet_result* res = NULL;
 *   if (duet_generate(model, &gp, NULL, NULL, &res, &err) == DUET_OK) {
 *     const uint8_t* png; size_t size;
 *     duet_result_png(res, 0, &png, &size);   // the bytes `duet generate` writes
 *     ...
 *     duet_result_free(res);
 *   }
 *   duet_model_free(model);
 *
 * Errors. Every function that can fail returns a duet_status; on failure it stores a
 * duet_error (code + message naming the file, field or argument at fault) in *err when err is
 * not NULL (free it with duet_error_free). No function aborts or lets a C++ exception escape.
 * Output handles are set to NULL on failure.
 *
 * Threads. A duet_model is immutable after duet_model_load: any number of threads may call
 * duet_generate, duet_denoise and duet_prompt_encode on one model at the same time (each call
 * takes a private model context from the model's pool, creating one when all are busy; nothing
 * is shared between calls but the weights). duet_model_load and duet_model_free must not run
 * concurrently with other uses of the same model, and a model must outlive its prompts. A
 * duet_prompt and a duet_result are read-only after creation: any thread may read them at
 * once; each is freed exactly once, after its last use. The progress callback runs on the
 * thread that called duet_generate, between model calls. Each call runs its compute on
 * duet_model_params.threads OpenMP threads of the calling thread (0 = duet's choice: the CPUs
 * that other processes do not keep busy, measured once per process, see docs/c-api.md);
 * concurrent calls each bring their own thread team, so they share the cores.
 */
#ifndef DUET_H
#define DUET_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define DUET_API __attribute__((visibility("default")))
#else
#define DUET_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on any incompatible change of this header (struct layouts, signatures). */
#define DUET_ABI_VERSION 1

typedef enum duet_status {
  DUET_OK = 0,
  DUET_ERR_INVALID_ARGUMENT = 1, /* a caller-supplied value is out of range / malformed */
  DUET_ERR_NOT_FOUND = 2,        /* a file, tensor or field is missing */
  DUET_ERR_DATA_LOSS = 3,        /* a file is truncated or internally inconsistent */
  DUET_ERR_UNIMPLEMENTED = 4,
  DUET_ERR_RESOURCE_EXHAUSTED = 5, /* out of memory, or over a memory cap */
  DUET_ERR_IO = 6,
  DUET_ERR_CANCELLED = 7, /* the progress callback asked to stop */
  DUET_ERR_INTERNAL = 8
} duet_status;

typedef struct duet_error duet_error;   /* one failure: code + message */
typedef struct duet_model duet_model;   /* weights (immutable) + a pool of contexts */
typedef struct duet_prompt duet_prompt; /* an encoded text, reusable across calls */
typedef struct duet_result duet_result; /* the images of one duet_generate call */

/* ---- library ---------------------------------------------------------------------------- */

DUET_API const char* duet_version(void); /* "0.1" */
DUET_API int duet_abi_version(void);     /* DUET_ABI_VERSION the library was built with */
DUET_API const char* duet_status_name(duet_status status); /* "invalid argument", ... */
DUET_API int duet_sampler_count(void);
DUET_API const char* duet_sampler_name(int index); /* NULL outside [0, duet_sampler_count()) */

DUET_API duet_status duet_error_code(const duet_error* err);    /* DUET_OK for NULL */
DUET_API const char* duet_error_message(const duet_error* err); /* "" for NULL */
DUET_API void duet_error_free(duet_error* err);                 /* NULL is a no-op */

/* ---- model ------------------------------------------------------------------------------ */

typedef struct duet_model_params {
  int threads;           /* OpenMP threads per call, >= 0; 0 = duet's choice (idle CPUs) */
  const char* precision; /* "f32" | "bf16" | "int8"; NULL = the checkpoint's, else f32 */
  const char*
      backend; /* "cpu" | "reference" | "reference-device" | "cuda" (GPU build); NULL = "cpu" */
} duet_model_params;

DUET_API duet_model_params duet_model_params_default(void);
/* Loads DIR/config.json + DIR/model.safetensors. params may be NULL (the defaults). */
DUET_API duet_status duet_model_load(const char* path, const duet_model_params* params,
                                     duet_model** model, duet_error** err);
DUET_API void duet_model_free(duet_model* model); /* NULL is a no-op */

DUET_API const char* duet_model_name(const duet_model* model);      /* config "name" */
DUET_API const char* duet_model_precision(const duet_model* model); /* "f32" | "bf16" | "int8" */
DUET_API int duet_model_channels(const duet_model* model);
DUET_API int duet_model_height(const duet_model* model); /* the default image size */
DUET_API int duet_model_width(const duet_model* model);
DUET_API float duet_model_default_cfg_scale(const duet_model* model); /* inference.cfg_scale */
DUET_API int duet_model_default_refine_every(const duet_model* model);
DUET_API int64_t duet_model_parameters(const duet_model* model); /* total parameter count */

/* ---- prompts ---------------------------------------------------------------------------- */

/* Encodes one text (text encoder, per-block K/V, semantic gates) once; pass it as
 * duet_generate_params.prompt_encoding / negative_encoding or to duet_denoise any number of
 * times, from any thread. It belongs to `model` (another model's calls refuse it). */
DUET_API duet_status duet_prompt_encode(duet_model* model, const char* text, duet_prompt** prompt,
                                        duet_error** err);
DUET_API const char* duet_prompt_text(const duet_prompt* prompt);
DUET_API void duet_prompt_free(duet_prompt* prompt); /* NULL is a no-op */

/* ---- generation ------------------------------------------------------------------------- */

typedef enum duet_refine_mode {
  DUET_REFINE_EVERY = 0, /* refine model call i (0-based) iff K > 0 and (i + 1) % K == 0 */
  DUET_REFINE_STEPS = 1, /* the 1-based model calls listed in refine_steps */
  DUET_REFINE_ALL = 2,
  DUET_REFINE_NONE = 3
} duet_refine_mode;

typedef struct duet_generate_params {
  /* The text: exactly one of prompt, prompts, prompt_encoding. */
  const char* prompt;                 /* one prompt for every image */
  const char* const* prompts;         /* num_images prompts, one per image */
  const duet_prompt* prompt_encoding; /* a pre-encoded prompt for every image */
  /* The unconditional text of classifier-free guidance: at most one of the two (NULL, NULL =
   * the empty text). */
  const char* negative_prompt;
  const duet_prompt* negative_encoding;
  int num_images;          /* [1, 64], one batch */
  int width, height;       /* 0 = the model's size; else multiples of the patch / refiner stride */
  int steps;               /* [1, 1000] */
  const char* sampler;     /* NULL = "dpmpp_2m"; duet_sampler_name() lists them */
  int karras;              /* nonzero: Karras sigmas (not ddim / ddpm) */
  float cfg_scale;         /* < 0 = the model's inference.cfg_scale; 1 = no guidance; <= 100 */
  int64_t seed;            /* >= 0, or -1 = random (duet_result_seed reports it) */
  const char* rng;         /* "torch" (default for NULL) | "philox" */
  int refine_mode;         /* a duet_refine_mode */
  int refine_every;        /* DUET_REFINE_EVERY: K; -1 = the model's inference.refine_every */
  const int* refine_steps; /* DUET_REFINE_STEPS: 1-based model calls */
  int num_refine_steps;
  const float* init_image; /* img2img: [C, H, W] in [-1, 1] (NULL = txt2img) */
  double strength;         /* img2img: fraction of the schedule re-run, [0, 1] */
  int png_bit_depth;       /* 8 | 16: of duet_result_png */
  /* Backbone cache (docs/caching.md): NULL or "off" = none; "on" | "step:T[,S,E]" |
   * "block:F,B,T[,S,E]". The PNG parameters of the result record what it reused. */
  const char* cache;
} duet_generate_params;

DUET_API duet_generate_params duet_generate_params_default(void);

/* Called after every model call with step = calls done (1..steps) and steps = calls to run;
 * a nonzero return cancels the generation (duet_generate then returns DUET_ERR_CANCELLED). */
typedef int (*duet_progress_fn)(int step, int steps, void* user_data);

/* Runs the pipeline (the same as `duet generate`: for equal parameters the images and PNG bytes
 * are identical). progress may be NULL. */
DUET_API duet_status duet_generate(duet_model* model, const duet_generate_params* params,
                                   duet_progress_fn progress, void* user_data, duet_result** result,
                                   duet_error** err);

/* Result accessors: pointers stay valid until duet_result_free. index in [0, count). */
DUET_API int duet_result_count(const duet_result* result);
DUET_API int duet_result_width(const duet_result* result);
DUET_API int duet_result_height(const duet_result* result);
DUET_API int duet_result_channels(const duet_result* result);
/* [count, C, H, W] floats in [-1, 1] (the model's output space). */
DUET_API const float* duet_result_images(const duet_result* result);
/* Image `index` as the PNG stores it: 8-bit samples [rows, cols, png_channels] with rows = H,
 * and (C = 1 or 3) cols = W, png_channels = C; (other C) the C planes side by side as one
 * grayscale image, cols = C * W, png_channels = 1. NULL for a bad index. */
DUET_API const uint8_t* duet_result_image_u8(const duet_result* result, int index, int* rows,
                                             int* cols, int* png_channels);
/* The PNG file of image `index` (with its `parameters` text chunk). */
DUET_API duet_status duet_result_png(const duet_result* result, int index, const uint8_t** data,
                                     size_t* size);
/* The `parameters` text (stable-diffusion-webui infotext) of image `index`; NULL if bad index. */
DUET_API const char* duet_result_parameters(const duet_result* result, int index);
DUET_API int64_t duet_result_seed(const duet_result* result);                  /* the seed used */
DUET_API int64_t duet_result_image_seed(const duet_result* result, int index); /* -1 bad index */
DUET_API int duet_result_model_evaluations(const duet_result* result);
DUET_API int duet_result_refiner_evaluations(const duet_result* result);

typedef enum duet_timing {
  DUET_TIMING_ENCODE = 0,  /* prompt encoding */
  DUET_TIMING_PREPARE = 1, /* sampler, buffers, x_T */
  DUET_TIMING_DENOISE = 2, /* the sampler loop */
  DUET_TIMING_FINISH = 3,  /* clamping, PNG encoding */
  DUET_TIMING_TOTAL = 4
} duet_timing;
DUET_API double duet_result_timing(const duet_result* result, duet_timing which); /* seconds */
DUET_API void duet_result_free(duet_result* result); /* NULL is a no-op */

/* ---- one model evaluation (`duet forward`) ---------------------------------------------- */

/* x [batch, C, height, width] (height, width: 0 = the model's), t [batch] real-valued
 * timesteps, every row with the text of `prompt`. Writes eps_s, eps_d, eps [batch, C, H, W] and
 * alpha [batch]; without refine eps_d and alpha are zeros and eps = eps_s. Any output may be
 * NULL (not written). */
DUET_API duet_status duet_denoise(duet_model* model, const float* x, int batch, int height,
                                  int width, const float* t, const duet_prompt* prompt, int refine,
                                  float* eps_s, float* eps_d, float* alpha, float* eps,
                                  duet_error** err);

#ifdef __cplusplus
}
#endif

#endif /* DUET_H */
