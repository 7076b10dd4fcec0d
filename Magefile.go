//go:build mage

package main

import (
	"os"
	"path/filepath"

	// mage:import
	build "github.com/grafana/grafana-plugin-sdk-go/build"
	"github.com/magefile/mage/mg"
)

// plugin.json sits at the repository root (the design card says so), not in
// src/ where the SDK's build looks by default.
func init() {
	_ = build.SetBeforeBuildCallback(func(cfg build.Config) (build.Config, error) {
		cfg.PluginJSONPath = "."
		return cfg, nil
	})
}

// Default is what `mage -v` runs.
var Default = Linux

// Linux builds the backend for the platforms Grafana runs it on here (linux
// amd64 and arm64), writes dist/go_plugin_build_manifest and copies
// plugin.json into dist/. `mage buildAll` builds every platform.
func Linux() error {
	mg.SerialDeps(build.Build.Linux, build.Build.LinuxARM64)
	return copyPluginJSON()
}

func copyPluginJSON() error {
	b, err := os.ReadFile("plugin.json")
	if err != nil {
		return err
	}
	if err := os.MkdirAll("dist", 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join("dist", "plugin.json"), b, 0o644)
}
