package groupkit

import (
	"context"
	"fmt"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/sasl"

	"github.com/drover-iot/drover/cli"
)

// saramaSASL sets up sarama's SASL with the franz-go mechanism conn built,
// so goka's sarama clients authenticate exactly like every franz-go client
// of drover (same password and token files, same validation).
func saramaSASL(c *sarama.Config, conn *cli.Conn, mech sasl.Mechanism) error {
	c.Net.SASL.Enable = true
	c.Net.SASL.Handshake = true
	c.Net.SASL.Version = sarama.SASLHandshakeV1
	switch name := mech.Name(); name {
	case cli.SASLPlain:
		pass, err := cli.ReadSecretFile("kafka-sasl-password-file", conn.KafkaSASLPassFile)
		if err != nil {
			return err
		}
		c.Net.SASL.Mechanism = sarama.SASLTypePlaintext
		c.Net.SASL.User, c.Net.SASL.Password = conn.KafkaSASLUser, pass
	case cli.SASLScramSHA256, cli.SASLScramSHA512:
		c.Net.SASL.Mechanism = sarama.SASLMechanism(name)
		// sarama checks that user and password are set; the franz-go
		// mechanism carries the real ones.
		c.Net.SASL.User, c.Net.SASL.Password = conn.KafkaSASLUser, "(from --kafka-sasl-password-file)"
		c.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{mech: mech} }
	case cli.SASLOAuthBearer:
		tf := &cli.TokenFile{Path: conn.KafkaSASLTokenFile}
		c.Net.SASL.Mechanism = sarama.SASLTypeOAuth
		c.Net.SASL.TokenProvider = tokenProvider{tf}
	default:
		return cli.Usagef("%s: %s has no sarama implementation (the --sarama-producer fallback needs PLAIN, SCRAM or OAUTHBEARER)", cli.FlagRef("kafka-sasl-mechanism"), name)
	}
	return nil
}

type tokenProvider struct{ f *cli.TokenFile }

func (p tokenProvider) Token() (*sarama.AccessToken, error) {
	t, err := p.f.Token()
	if err != nil {
		return nil, fmt.Errorf("kafka OAUTHBEARER token: %w", err)
	}
	return &sarama.AccessToken{Token: t}, nil
}

// scramClient runs a franz-go SCRAM mechanism as sarama's SCRAMClient:
// Begin starts the franz-go session, the first Step returns its first
// message, every further Step hands the server's challenge to it.
type scramClient struct {
	mech  sasl.Mechanism
	sess  sasl.Session
	first []byte
	done  bool
}

func (s *scramClient) Begin(_, _, _ string) error {
	sess, first, err := s.mech.Authenticate(context.Background(), "")
	if err != nil {
		return err
	}
	s.sess, s.first, s.done = sess, first, false
	return nil
}

func (s *scramClient) Step(challenge string) (string, error) {
	if s.first != nil && challenge == "" {
		out := s.first
		s.first = nil
		return string(out), nil
	}
	done, out, err := s.sess.Challenge([]byte(challenge))
	if err != nil {
		return "", err
	}
	s.done = done
	return string(out), nil
}

func (s *scramClient) Done() bool { return s.done }
