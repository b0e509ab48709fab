package apps

import (
	_ "embed"
	"slices"
)

//go:embed example.yaml
var exampleYAML []byte

// ExampleYAML returns the apps file `drover dev` runs by default.
func ExampleYAML() []byte { return slices.Clone(exampleYAML) }

// Example returns the parsed example apps.
func Example() ([]*App, error) { return Parse("example.yaml", exampleYAML) }
