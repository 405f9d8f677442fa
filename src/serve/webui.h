// The web UI served at `/` (plain HTML/CSS/JS, no external resources).
#pragma once

namespace duet::serve {
const char* webui_html();
}  // namespace duet::serve
