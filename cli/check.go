package cli

import (
	"errors"

	"github.com/spf13/cobra"
)

// ErrConfigOK ends a --check-config run whose configuration is valid;
// Execute prints "configuration ok" and exits 0.
var ErrConfigOK = errors.New("configuration ok")

const checkAnnotation = "drover.check-config"

// ChecksConfig marks cmd as one whose RunE validates its own flags and then
// calls Conn.ConfigChecked before it connects to anything, so that
// --check-config runs the command's whole validation. Every other command
// gets the shared checks only (Kafka TLS and SASL, schema registry) and does
// not run at all under --check-config.
func ChecksConfig(cmd *cobra.Command) {
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations[checkAnnotation] = "true"
}

// startCheck runs the shared checks of a --check-config run: the connection
// settings of every flag group cmd registered, built exactly as a real start
// builds them (files read, CAs parsed, SASL mechanisms set up) but without a
// connection. A command marked with ChecksConfig then runs to its
// ConfigChecked call; any other stops here.
func (c *Conn) startCheck(cmd *cobra.Command) error {
	c.checking = true
	if cmd.Flags().Lookup("kafka-brokers") != nil {
		if _, err := c.KafkaOpts(); err != nil {
			return err
		}
	}
	if cmd.Flags().Lookup("schema-registry-url") != nil {
		if _, err := c.Registry(); err != nil {
			return err
		}
	}
	if cmd.Annotations[checkAnnotation] == "" {
		return ErrConfigOK
	}
	return nil
}

// ConfigChecked is where a command marked with ChecksConfig has validated
// its configuration and is about to connect: under --check-config it
// returns ErrConfigOK (the command returns it and exits 0), otherwise nil.
func (c *Conn) ConfigChecked() error {
	if c.checking {
		return ErrConfigOK
	}
	return nil
}
