// The objects behind duet.h's opaque handles and the exception / Status boundary every extern "C"
// function goes through. Internal to libduet.so.
#pragma once

#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "duet.h"
#include "duet/model.h"
#include "duet/pipeline.h"
#include "duet/status.h"

struct duet_error {
  duet_status code = DUET_OK;
  std::string message;
};

struct duet_model {
  std::shared_ptr<const duet::Model> model;
  duet::DenoiserInfo info;
  std::string precision;  // precision_name() of the loaded model
  int threads = 0;        // duet_model_params.threads (0 = OpenMP default)
  // Denoisers (each owning one Context) not in use by a call. A call takes one or makes a new
  // one, and gives it back when done: concurrent calls never share a Context.
  std::mutex mu;
  std::vector<std::unique_ptr<duet::Denoiser>> idle;
};

struct duet_prompt {
  const duet_model* owner = nullptr;
  std::string text;
  std::unique_ptr<duet::PromptEmbedding> embedding;  // batch 1
};

struct duet_result {
  duet::GenerateResult r;
  struct Image {
    std::vector<uint8_t> u8;  // [rows, cols, channels] 8-bit samples
    int rows = 0, cols = 0, channels = 0;
    std::vector<uint8_t> png;  // the PNG file with its parameters chunk
    std::string parameters;
  };
  std::vector<Image> images;
};

namespace duet::capi {

duet_status to_c(StatusCode code);
// Stores `st` in *err (when err is not NULL and st is not ok) and returns its code.
duet_status report(duet_error** err, const Status& st);

// Runs f (returning Status) with every C++ exception turned into an error status.
template <typename F>
duet_status guarded(duet_error** err, F&& f) noexcept {
  if (err) *err = nullptr;
  try {
    return report(err, f());
  } catch (const std::bad_alloc&) {
    return report(err, resource_exhausted("out of memory"));
  } catch (const std::exception& e) {
    return report(err, internal_error(std::string("unexpected C++ exception: ") + e.what()));
  } catch (...) {
    return report(err, internal_error("unexpected C++ exception"));
  }
}

// A denoiser of the model's pool, held for one call.
class Lease {
 public:
  explicit Lease(duet_model* m);
  ~Lease();
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  Denoiser& operator*() { return *d_; }
  Denoiser* operator->() { return d_.get(); }

 private:
  duet_model* m_;
  std::unique_ptr<Denoiser> d_;
};

// Applies the model's thread count to the calling thread's OpenMP settings.
void use_threads(const duet_model& m);
// NULL checks naming the argument.
Status need(const void* p, const char* what);

}  // namespace duet::capi
