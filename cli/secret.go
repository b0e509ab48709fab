package cli

// ReadSecretFile returns the content of the secret file at path (trailing
// newlines removed), "" for an empty path; an unreadable file is a usage
// error naming --flag.
func ReadSecretFile(flag, path string) (string, error) { return readSecret(flag, path) }
