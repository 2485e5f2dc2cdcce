//go:build tools

// Package tools pins the Go-built tools of scripts/bootstrap-tools, for Dependabot.
package tools

import (
	_ "github.com/prometheus/alertmanager/cmd/amtool"
	_ "github.com/rhysd/actionlint/cmd/actionlint"
	_ "helm.sh/helm/v3/cmd/helm"
)
