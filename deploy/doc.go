// Package deploy holds drover's Kubernetes manifests (a kustomize base, the
// dev, staging and prod overlays and the kafka-tls component; see README.md)
// and, in its tests, their validation: every overlay builds with kustomize,
// every rendered object decodes strictly into its Kubernetes type, probes
// point at the stages' real admin ports, every container runs a real
// subcommand with real flags, and the ConfigMaps parse with drover's own
// parsers. The package has no code of its own.
package deploy
