// duet.h: errors, library information, model loading and the model's denoiser pool.
#include <omp.h>

#include <string>
#include <utility>

#include "capi/capi_internal.h"
#include "diffusion/sampler.h"
#include "duet/backend_kind.h"
#include "duet/cpu_load.h"
#include "duet/precision.h"
#include "duet/quantize.h"
#include "pipeline/model_denoiser.h"

namespace duet::capi {

duet_status to_c(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return DUET_OK;
    case StatusCode::kInvalidArgument:
      return DUET_ERR_INVALID_ARGUMENT;
    case StatusCode::kNotFound:
      return DUET_ERR_NOT_FOUND;
    case StatusCode::kDataLoss:
      return DUET_ERR_DATA_LOSS;
    case StatusCode::kUnimplemented:
      return DUET_ERR_UNIMPLEMENTED;
    case StatusCode::kResourceExhausted:
      return DUET_ERR_RESOURCE_EXHAUSTED;
    case StatusCode::kIoError:
      return DUET_ERR_IO;
    case StatusCode::kCancelled:
      return DUET_ERR_CANCELLED;
    case StatusCode::kInternal:
      return DUET_ERR_INTERNAL;
  }
  return DUET_ERR_INTERNAL;
}

duet_status report(duet_error** err, const Status& st) {
  const duet_status code = to_c(st.code());
  if (code != DUET_OK && err) {
    try {
      *err = new duet_error{code, st.message()};
    } catch (...) {
      *err = nullptr;  // no memory even for the message: the code still tells what happened
    }
  }
  return code;
}

Lease::Lease(duet_model* m) : m_(m) {
  {
    std::lock_guard<std::mutex> lock(m->mu);
    if (!m->idle.empty()) {
      d_ = std::move(m->idle.back());
      m->idle.pop_back();
    }
  }
  if (!d_) d_ = make_model_denoiser(m->model);
}

Lease::~Lease() {
  try {
    std::lock_guard<std::mutex> lock(m_->mu);
    m_->idle.push_back(std::move(d_));
  } catch (...) {
    // push_back could not grow the pool: the denoiser is dropped, the next call makes another.
  }
}

void use_threads(const duet_model& m) {
  if (m.threads > 0) omp_set_num_threads(m.threads);
}

Status need(const void* p, const char* what) {
  if (p) return Status::ok();
  return invalid_argument(std::string(what) + " is NULL");
}

}  // namespace duet::capi

using duet::capi::guarded;
using duet::capi::need;

extern "C" {

const char* duet_version(void) { return "0.1"; }
int duet_abi_version(void) { return DUET_ABI_VERSION; }

const char* duet_status_name(duet_status status) {
  switch (status) {
    case DUET_OK:
      return "ok";
    case DUET_ERR_INVALID_ARGUMENT:
      return "invalid argument";
    case DUET_ERR_NOT_FOUND:
      return "not found";
    case DUET_ERR_DATA_LOSS:
      return "data loss";
    case DUET_ERR_UNIMPLEMENTED:
      return "unimplemented";
    case DUET_ERR_RESOURCE_EXHAUSTED:
      return "resource exhausted";
    case DUET_ERR_IO:
      return "I/O error";
    case DUET_ERR_CANCELLED:
      return "cancelled";
    case DUET_ERR_INTERNAL:
      return "internal error";
  }
  return "unknown status";
}

int duet_sampler_count(void) { return static_cast<int>(duet::diffusion::sampler_names().size()); }

const char* duet_sampler_name(int index) {
  const auto& names = duet::diffusion::sampler_names();
  if (index < 0 || index >= static_cast<int>(names.size())) return nullptr;
  return names[index].c_str();
}

duet_status duet_error_code(const duet_error* err) { return err ? err->code : DUET_OK; }
const char* duet_error_message(const duet_error* err) { return err ? err->message.c_str() : ""; }
void duet_error_free(duet_error* err) { delete err; }

duet_model_params duet_model_params_default(void) {
  duet_model_params p;
  p.threads = 0;
  p.precision = nullptr;
  p.backend = nullptr;
  return p;
}

duet_status duet_model_load(const char* path, const duet_model_params* params, duet_model** model,
                            duet_error** err) {
  if (model) *model = nullptr;
  return guarded(err, [&]() -> duet::Status {
    DUET_RETURN_IF_ERROR(need(path, "path"));
    DUET_RETURN_IF_ERROR(need(model, "model (the output pointer)"));
    const duet_model_params p = params ? *params : duet_model_params_default();
    if (p.threads < 0)
      return duet::invalid_argument("duet_model_params.threads must be >= 0, got " +
                                    std::to_string(p.threads));
    duet::LoadOptions lo;
    if (p.backend) {
      auto kind = duet::parse_backend_kind(p.backend);
      if (!kind)
        return duet::invalid_argument("duet_model_params.backend: " + kind.status().message());
      lo.backend = *kind;
    }
    if (p.precision) {
      DUET_ASSIGN_OR_RETURN(lo.precision,
                            duet::parse_precision(p.precision, "duet_model_params.precision"));
    } else {
      DUET_ASSIGN_OR_RETURN(std::optional<duet::Precision> stored,
                            duet::checkpoint_precision(path));
      lo.precision = stored.value_or(duet::Precision::kF32);
    }
    auto m = std::make_unique<duet_model>();
    duet::CpuLoadProbe probe;  // threads = 0: the process's measured choice (duet/cpu_load.h)
    DUET_ASSIGN_OR_RETURN(m->model, duet::Model::load(path, lo));
    // before any oneDNN primitive is created (they are made on first use)
    m->threads = probe.finish(p.threads).threads;
    duet::capi::use_threads(*m);
    m->precision = duet::precision_name(lo.precision);
    std::unique_ptr<duet::Denoiser> d = duet::make_model_denoiser(m->model);
    m->info = d->info();
    m->idle.push_back(std::move(d));
    *model = m.release();
    return duet::Status::ok();
  });
}

void duet_model_free(duet_model* model) { delete model; }

const char* duet_model_name(const duet_model* m) { return m ? m->info.name.c_str() : ""; }
const char* duet_model_precision(const duet_model* m) { return m ? m->precision.c_str() : ""; }
int duet_model_channels(const duet_model* m) { return m ? m->info.channels : 0; }
int duet_model_height(const duet_model* m) { return m ? m->info.height : 0; }
int duet_model_width(const duet_model* m) { return m ? m->info.width : 0; }
float duet_model_default_cfg_scale(const duet_model* m) { return m ? m->info.cfg_scale : 0.0f; }
int duet_model_default_refine_every(const duet_model* m) { return m ? m->info.refine_every : 0; }
int64_t duet_model_parameters(const duet_model* m) { return m ? m->model->info().parameters : 0; }

}  // extern "C"
