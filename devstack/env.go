package devstack

import "github.com/drover-iot/drover/devstack/devstage"

// Endpoints are where clients reach the stack's services (devstage.Endpoints).
type Endpoints = devstage.Endpoints

// ReadEnvFile reads an env file Endpoints.WriteEnvFile wrote
// (devstage.ReadEnvFile).
func ReadEnvFile(path string) (map[string]string, error) { return devstage.ReadEnvFile(path) }
