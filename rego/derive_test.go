package rego

// The example fixtures may give only the raw facts (an http request to a
// Kubernetes endpoint, a SQL statement); the live binary derives the rest
// with these packages, and so must the tests that replay them.
import (
	_ "github.com/clawpatrol/clawpatrol/inspect/k8s"
	_ "github.com/clawpatrol/clawpatrol/sqlfacts"
)
