"""GPU hardware profiles: one TOML file per GPU, each number with its source (package data)."""
