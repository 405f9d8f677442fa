// Sub-command registry for the `duet` CLI. Each command lives in its own cmd_*.cpp and registers
// itself with a static CommandRegistrar, so adding a command never touches main.cpp.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

namespace duet::cli {

// setup(app) adds the sub-command's options to `sub` and returns the function that runs it
// (returning the process exit code) once CLI11 has parsed the command line.
using CommandSetup = std::function<std::function<int()>(CLI::App& sub)>;

struct CommandInfo {
  std::string name;
  std::string description;
  CommandSetup setup;
};

std::vector<CommandInfo>& command_registry();

struct CommandRegistrar {
  CommandRegistrar(std::string name, std::string description, CommandSetup setup) {
    command_registry().push_back({std::move(name), std::move(description), std::move(setup)});
  }
};

}  // namespace duet::cli
