// The real model behind the pipeline's Denoiser interface, for callers that hold the Model
// themselves (the C ABI keeps one Model and a pool of denoisers over it).
#pragma once

#include <memory>

#include "duet/model.h"
#include "duet/pipeline.h"

namespace duet {

// A Denoiser over `model` (its Context is created by the first prepare()). Like load_denoiser's,
// one instance serves one thread at a time; any number of them may share the Model.
std::unique_ptr<Denoiser> make_model_denoiser(std::shared_ptr<const Model> model);
// The PromptState behind an embedding made by such a denoiser's encode() / concat().
const PromptState& model_prompt_state(const PromptEmbedding& embedding);

}  // namespace duet
