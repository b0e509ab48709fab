package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/aws"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// SASL mechanisms every stage accepts (--kafka-sasl-mechanism, case
// insensitive).
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
	SASLOAuthBearer = "OAUTHBEARER"
	SASLAWSMSKIAM   = "AWS_MSK_IAM"
)

// SASLMechanisms lists the accepted mechanisms, for help texts and errors.
var SASLMechanisms = []string{SASLPlain, SASLScramSHA256, SASLScramSHA512, SASLOAuthBearer, SASLAWSMSKIAM}

// FlagRef names a flag and the environment variable bound to it, for
// configuration errors: "--kafka-tls-ca ($DROVER_KAFKA_TLS_CA)".
func FlagRef(flag string) string { return "--" + flag + " ($" + EnvName(flag) + ")" }

// KafkaTLSConfig returns the TLS configuration of the Kafka connection, nil
// when TLS is off. A CA or key pair that cannot be read is a usage error
// naming the flag and its variable.
func (c *Conn) KafkaTLSConfig() (*tls.Config, error) {
	if !c.KafkaTLS && c.KafkaTLSCA == "" && c.KafkaTLSCert == "" && c.KafkaTLSKey == "" {
		return nil, nil
	}
	return tlsConfig("kafka-tls", c.KafkaTLSCA, c.KafkaTLSCert, c.KafkaTLSKey)
}

// KafkaSASL returns the franz-go SASL mechanism of the Kafka connection, nil
// when --kafka-sasl-mechanism is empty. Every check that can be made without
// a broker is made here, so a bad mechanism, a missing password or token
// file or an unusable AWS configuration fails at start (exit 2), naming the
// flag and its variable:
//
//   - PLAIN, SCRAM-SHA-256, SCRAM-SHA-512: --kafka-sasl-user and
//     --kafka-sasl-password-file (read once, at start).
//   - OAUTHBEARER: --kafka-sasl-token-file, a file holding the bearer token
//     (a JWT), read at start and re-read at every authentication once its
//     modification time or size changed, so a sidecar or a projected
//     volume can rotate it without a restart (franz-go re-authenticates
//     before the broker's session lifetime ends).
//   - AWS_MSK_IAM: franz-go's sasl/aws signer with credentials from the
//     standard AWS chain (environment, shared config and credentials files,
//     web identity / IRSA, ECS and EC2 instance roles), retrieved (and
//     cached until they expire) at every authentication; the region comes
//     from the broker's host name.
func (c *Conn) KafkaSASL() (sasl.Mechanism, error) {
	m := strings.TrimSpace(c.KafkaSASLMechanism)
	if m == "" {
		if c.KafkaSASLTokenFile != "" {
			return nil, Usagef("%s is set but %s is not %s", FlagRef("kafka-sasl-token-file"), FlagRef("kafka-sasl-mechanism"), SASLOAuthBearer)
		}
		return nil, nil
	}
	switch strings.ToUpper(m) {
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		if c.KafkaSASLUser == "" {
			return nil, Usagef("%s: %s needs a user name", FlagRef("kafka-sasl-user"), strings.ToUpper(m))
		}
		if c.KafkaSASLPassFile == "" {
			return nil, Usagef("%s: %s needs a password file", FlagRef("kafka-sasl-password-file"), strings.ToUpper(m))
		}
		pass, err := readSecret("kafka-sasl-password-file", c.KafkaSASLPassFile)
		if err != nil {
			return nil, err
		}
		switch strings.ToUpper(m) {
		case SASLPlain:
			return plain.Auth{User: c.KafkaSASLUser, Pass: pass}.AsMechanism(), nil
		case SASLScramSHA256:
			return scram.Auth{User: c.KafkaSASLUser, Pass: pass}.AsSha256Mechanism(), nil
		default:
			return scram.Auth{User: c.KafkaSASLUser, Pass: pass}.AsSha512Mechanism(), nil
		}
	case SASLOAuthBearer:
		if c.KafkaSASLTokenFile == "" {
			return nil, Usagef("%s: %s needs a token file", FlagRef("kafka-sasl-token-file"), SASLOAuthBearer)
		}
		tf := &TokenFile{Path: c.KafkaSASLTokenFile}
		if _, err := tf.Token(); err != nil {
			return nil, Usagef("%s: %w", FlagRef("kafka-sasl-token-file"), err)
		}
		return oauth.Oauth(func(context.Context) (oauth.Auth, error) {
			tok, err := tf.Token()
			if err != nil {
				return oauth.Auth{}, err
			}
			return oauth.Auth{Token: tok}, nil
		}), nil
	case SASLAWSMSKIAM:
		if c.KafkaSASLUser != "" || c.KafkaSASLPassFile != "" || c.KafkaSASLTokenFile != "" {
			return nil, Usagef("%s: %s takes its credentials from the AWS chain (AWS_* variables, shared files, IRSA, instance role), not from --kafka-sasl-user/-password-file/-token-file", FlagRef("kafka-sasl-mechanism"), SASLAWSMSKIAM)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// Loads the shared config and the environment only; credentials
		// are fetched lazily, at the first authentication.
		cfg, err := awsconfig.LoadDefaultConfig(ctx)
		if err != nil {
			return nil, Usagef("%s %s: AWS configuration: %w", FlagRef("kafka-sasl-mechanism"), SASLAWSMSKIAM, err)
		}
		return aws.ManagedStreamingIAM(func(ctx context.Context) (aws.Auth, error) {
			cr, err := cfg.Credentials.Retrieve(ctx)
			if err != nil {
				return aws.Auth{}, fmt.Errorf("AWS credentials for %s: %w", SASLAWSMSKIAM, err)
			}
			return aws.Auth{AccessKey: cr.AccessKeyID, SecretKey: cr.SecretAccessKey, SessionToken: cr.SessionToken}, nil
		}), nil
	}
	return nil, Usagef("%s: unknown mechanism %q (want %s)", FlagRef("kafka-sasl-mechanism"), m, strings.Join(SASLMechanisms, ", "))
}

// TokenFile is a bearer token kept in a file that an operator or a sidecar
// rotates. Token re-reads the file when its modification time or size
// changed since the last read, and otherwise returns the cached token.
type TokenFile struct {
	Path string

	mu    sync.Mutex
	mod   time.Time
	size  int64
	token string
}

// Token returns the current token (surrounding white space removed); an
// unreadable or empty file is an error.
func (f *TokenFile) Token() (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := os.Stat(f.Path)
	if err != nil {
		return "", err
	}
	if f.token != "" && st.ModTime().Equal(f.mod) && st.Size() == f.size {
		return f.token, nil
	}
	b, err := os.ReadFile(f.Path)
	if err != nil {
		return "", err
	}
	tok := string(bytes.TrimSpace(b))
	if tok == "" {
		return "", fmt.Errorf("%s: empty token", f.Path)
	}
	f.token, f.mod, f.size = tok, st.ModTime(), st.Size()
	return tok, nil
}
