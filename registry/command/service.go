package command

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/drover-iot/drover/admin"
	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/registry"
	"github.com/drover-iot/drover/registry/api"
	"github.com/drover-iot/drover/registry/dynsec"
	"github.com/drover-iot/drover/registry/emqx"
	"github.com/drover-iot/drover/registry/service"
	"github.com/drover-iot/drover/schemas"
)

// DefaultAdminAddr is where `drover registry` listens: loopback, because
// its admin port also serves the provisioning API.
const DefaultAdminAddr = "127.0.0.1:9482"

type serviceFlags struct {
	adminAddr                                string
	apiTokenFile, apiReadTokenFile, caKeyDir string
	emqx                                     bool
	emqxTokenFile, emqxAPIURL, emqxAPIKey    string
	emqxAPISecretFile, emqxAPIKeyFile        string
	bridgeUser, bridgePassFile               string
	dynsecURL, dynsecUser, dynsecPassFile    string
	dynsecResync                             time.Duration
	dynsecTLSCA, dynsecTLSCert, dynsecTLSKey string
	dynsecClientID                           string
}

// RegistryCommand returns `drover registry` (the service) and `drover
// registry dynsec-config`.
func RegistryCommand(conn *cli.Conn) *cobra.Command {
	var f serviceFlags
	cmd := &cobra.Command{
		Use:   "registry",
		Short: "Run the registry service: provisioning API, EMQX authentication, Mosquitto dynsec sync",
		Long: `registry keeps a live view of the device registry and serves, on its admin
listener (--admin-addr, loopback by default) besides /metrics, /healthz and
/readyz:

  /v1/...          the provisioning API (--api-token-file; see registry/README.md)
  /emqx/authn      EMQX 5 HTTP authentication (--emqx)
  /emqx/authz      EMQX 5 HTTP authorization (--emqx)

and keeps brokers in step: Mosquitto's dynamic security plugin (--dynsec-url:
a client and a role per device, disabled or deleted when a device is
suspended or revoked, which disconnects it) and EMQX (--emqx-api-url: revoked
and suspended devices are kicked). /readyz fails until the view has read the
registry (and dynsec is in step, when enabled).`,
		Example: `  drover registry --api-token-file /run/secrets/registry-token
  drover registry --admin-addr :9482 --emqx --emqx-token-file emqx.token \
    --bridge-password-file bridge.pass --emqx-api-url http://emqx:18083 --emqx-api-key drover --emqx-api-secret-file emqx-api.secret
  drover registry --dynsec-url tcp://mosquitto:1883 --dynsec-password-file dynsec-admin.pass`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd.Context(), conn)
		},
	}
	fs := cmd.Flags()
	conn.AddKafkaFlags(fs)
	conn.AddRegistryFlags(fs)
	admin.AddFlag(fs, &f.adminAddr, DefaultAdminAddr)
	fs.StringVar(&f.apiTokenFile, "api-token-file", "", "file holding the operator token of the provisioning API (read and write; empty = no API)")
	fs.StringVar(&f.apiReadTokenFile, "api-read-token-file", "", "file holding a read-only token of the provisioning API")
	fs.StringVar(&f.caKeyDir, "ca-key-dir", "", "directory of tenants' CA keys (TENANT-ca.key) for the API to sign certificates (empty = it signs none)")
	fs.BoolVar(&f.emqx, "emqx", false, "serve EMQX's HTTP authentication and authorization")
	fs.StringVar(&f.emqxTokenFile, "emqx-token-file", "", "file holding the bearer token EMQX must send (empty = none)")
	fs.StringVar(&f.emqxAPIURL, "emqx-api-url", "", "EMQX management API (http://emqx:18083) to kick suspended and revoked devices (empty = no kicks)")
	fs.StringVar(&f.emqxAPIKey, "emqx-api-key", "", "EMQX API key")
	fs.StringVar(&f.emqxAPISecretFile, "emqx-api-secret-file", "", "file holding the EMQX API key's secret")
	fs.StringVar(&f.emqxAPIKeyFile, "emqx-api-key-file", "", "file holding the EMQX API key and its secret as KEY:SECRET, the format of EMQX's api_key.bootstrap_file, so the file that seeds EMQX's key serves here too (with --emqx-api-key, that key's line; instead of --emqx-api-secret-file)")
	f.addPrincipals(fs)
	fs.DurationVar(&f.dynsecResync, "dynsec-resync", 5*time.Minute, "interval of full reconciliations with Mosquitto")
	fs.StringVar(&f.dynsecTLSCA, "dynsec-tls-ca", "", "PEM CAs to trust for an ssl:// --dynsec-url")
	fs.StringVar(&f.dynsecTLSCert, "dynsec-tls-cert", "", "PEM client certificate for an ssl:// --dynsec-url")
	fs.StringVar(&f.dynsecTLSKey, "dynsec-tls-key", "", "PEM client key for an ssl:// --dynsec-url")
	cmd.AddCommand(dynsecConfigCommand(conn))
	return cmd
}

// addPrincipals registers the flags of the service principals and the
// dynsec administrator, shared with dynsec-config.
func (f *serviceFlags) addPrincipals(fs *pflag.FlagSet) {
	fs.StringVar(&f.bridgeUser, "bridge-user", "drover-bridge", "MQTT username of the bridge's principal")
	fs.StringVar(&f.bridgePassFile, "bridge-password-file", "", "file holding the bridge's MQTT password (empty = no bridge principal)")
	fs.StringVar(&f.dynsecURL, "dynsec-url", "", "Mosquitto with the dynamic security plugin to keep in step (tcp:// or ssl://; empty = none)")
	fs.StringVar(&f.dynsecUser, "dynsec-user", "drover-registry", "the dynsec administrator's username")
	fs.StringVar(&f.dynsecPassFile, "dynsec-password-file", "", "file holding the dynsec administrator's password")
	fs.StringVar(&f.dynsecClientID, "dynsec-client-id", "drover-registry-dynsec", "MQTT client id of the dynsec connection (dynsec-config binds the administrator to it)")
}

func (f *serviceFlags) config(conn *cli.Conn) (service.Config, error) {
	var cfg service.Config
	tokens := map[string]api.Scope{}
	for flag, p := range map[string]struct {
		file  string
		scope api.Scope
	}{"api-token-file": {f.apiTokenFile, api.Write}, "api-read-token-file": {f.apiReadTokenFile, api.Read}} {
		tok, err := cli.ReadSecretFile(flag, p.file)
		if err != nil {
			return cfg, err
		}
		if p.file != "" && len(tok) < 16 {
			return cfg, cli.Usagef("--%s: the token is %d characters long; use at least 16", flag, len(tok))
		}
		if tok != "" {
			tokens[tok] = p.scope
		}
	}
	if f.apiReadTokenFile != "" && f.apiTokenFile == "" {
		return cfg, cli.Usagef("--api-read-token-file: needs --api-token-file")
	}
	if f.caKeyDir != "" {
		if st, err := os.Stat(f.caKeyDir); err != nil || !st.IsDir() {
			return cfg, cli.Usagef("--ca-key-dir %s: not a directory", f.caKeyDir)
		}
	}
	cfg.APITokens, cfg.CAKeyDir, cfg.DynsecResync = tokens, f.caKeyDir, f.dynsecResync
	var err error
	if cfg.EMQX, cfg.EMQXToken, cfg.EMQXAPI, err = f.emqxConfig(); err != nil {
		return cfg, err
	}
	if cfg.Services, err = f.services(); err != nil {
		return cfg, err
	}
	if cfg.Dynsec, err = f.dynsecConfig(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

func (f *serviceFlags) emqxConfig() (bool, string, *service.EMQXAPI, error) {
	tok, err := cli.ReadSecretFile("emqx-token-file", f.emqxTokenFile)
	if err != nil {
		return false, "", nil, err
	}
	if !f.emqx && f.emqxTokenFile != "" {
		return false, "", nil, cli.Usagef("--emqx-token-file: needs --emqx")
	}
	if f.emqxAPIURL == "" {
		return f.emqx, tok, nil, nil
	}
	if f.emqxAPIKeyFile != "" {
		if f.emqxAPISecretFile != "" {
			return false, "", nil, cli.Usagef("--emqx-api-key-file: give it or --emqx-api-secret-file, not both")
		}
		data, err := cli.ReadSecretFile("emqx-api-key-file", f.emqxAPIKeyFile)
		if err != nil {
			return false, "", nil, err
		}
		key, secret, err := emqx.ParseAPIKeyFile([]byte(data), f.emqxAPIKey)
		if err != nil {
			return false, "", nil, cli.Usagef("--emqx-api-key-file %s: %w", f.emqxAPIKeyFile, err)
		}
		return f.emqx, tok, &service.EMQXAPI{URL: f.emqxAPIURL, Key: key, Secret: secret}, nil
	}
	secret, err := cli.ReadSecretFile("emqx-api-secret-file", f.emqxAPISecretFile)
	if err != nil {
		return false, "", nil, err
	}
	if f.emqxAPIKey == "" || secret == "" {
		return false, "", nil, cli.Usagef("--emqx-api-url: needs --emqx-api-key-file, or --emqx-api-key and --emqx-api-secret-file")
	}
	return f.emqx, tok, &service.EMQXAPI{URL: f.emqxAPIURL, Key: f.emqxAPIKey, Secret: secret}, nil
}

// services returns the bridge's principal when it has a password file.
func (f *serviceFlags) services() ([]registry.Service, error) {
	pass, err := cli.ReadSecretFile("bridge-password-file", f.bridgePassFile)
	if err != nil || pass == "" {
		return nil, err
	}
	h, err := registry.HashSecret(pass)
	if err != nil {
		return nil, err
	}
	return []registry.Service{{Name: f.bridgeUser, Secret: h, ClientIDPrefix: f.bridgeUser, ACL: registry.BridgeACL()}}, nil
}

func (f *serviceFlags) dynsecConfig() (*dynsec.ClientConfig, error) {
	if f.dynsecURL == "" {
		return nil, nil
	}
	pass, err := cli.ReadSecretFile("dynsec-password-file", f.dynsecPassFile)
	if err != nil {
		return nil, err
	}
	if pass == "" {
		return nil, cli.Usagef("--dynsec-url: needs --dynsec-password-file")
	}
	dc := &dynsec.ClientConfig{URL: f.dynsecURL, Username: f.dynsecUser, Password: []byte(pass), ClientID: f.dynsecClientID}
	if f.dynsecTLSCA != "" || f.dynsecTLSCert != "" {
		if dc.TLS, err = cli.TLSConfig("dynsec-tls", f.dynsecTLSCA, f.dynsecTLSCert, f.dynsecTLSKey); err != nil {
			return nil, err
		}
	}
	return dc, nil
}

func (f *serviceFlags) run(ctx context.Context, conn *cli.Conn) error {
	cfg, err := f.config(conn)
	if err != nil {
		return err
	}
	if len(cfg.APITokens) == 0 && !cfg.EMQX && cfg.Dynsec == nil && cfg.EMQXAPI == nil {
		conn.Logger().Warn("registry: neither --api-token-file, --emqx, --emqx-api-url nor --dynsec-url given: serving the view's metrics only")
	}
	if cfg.Kafka, err = conn.KafkaOpts(); err != nil {
		return err
	}
	reg, err := conn.Registry()
	if err != nil {
		return err
	}
	if cfg.Serde, err = schemas.NewSerde(reg); err != nil {
		return err
	}
	cfg.Log = conn.Logger()
	cfg.Admin = admin.New(f.adminAddr, cfg.Log)
	if err := cfg.Admin.Listen(); err != nil {
		return cli.Usagef("--admin-addr: %w", err)
	}
	return service.Run(ctx, cfg)
}

func dynsecConfigCommand(conn *cli.Conn) *cobra.Command {
	var f serviceFlags
	var out string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "dynsec-config",
		Short: "Render Mosquitto's dynamic-security.json from the registry (for a broker's first start or a recovery)",
		Long: `Render a complete dynamic-security.json from the registry: secure defaults (no
publish or subscribe without a role), the dynsec administrator that the
registry service logs in as (--dynsec-password-file), the bridge
(--bridge-password-file), and every device that is not revoked with its role
and the stored hash of its secret (suspended ones disabled). Mosquitto reads it
at start (plugin_opt_config_file), which is how a broker gets the secrets of
devices it never saw being added: the registry keeps only hashes, in the form
dynsec stores. Start Mosquitto with it, then run 'drover registry --dynsec-url'
to keep it in step. The file holds password hashes: it is written with mode 0600.`,
		Example: `  drover registry dynsec-config --dynsec-password-file dynsec-admin.pass \
    --bridge-password-file bridge.pass --out /var/lib/mosquitto/dynamic-security.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return cli.Usagef("--out: required")
			}
			svcs, err := f.dynsecServices()
			if err != nil {
				return err
			}
			s, err := open(cmd.Context(), conn, timeout)
			if err != nil {
				return err
			}
			defer s.close()
			b, err := dynsec.RenderConfig(s.view.Devices(), svcs)
			if err != nil {
				return err
			}
			if err := os.WriteFile(out, append(b, '\n'), 0o600); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s: %d device(s), %d service(s)\n", out, len(s.view.Devices()), len(svcs))
			return nil
		},
	}
	fs := cmd.Flags()
	sessionFlags(fs, conn, &timeout)
	f.addPrincipals(fs)
	fs.StringVar(&out, "out", "", "the file to write (mode 0600)")
	return cmd
}

// dynsecServices are the principals of a rendered configuration.
func (f *serviceFlags) dynsecServices() ([]dynsec.Service, error) {
	admin, err := cli.ReadSecretFile("dynsec-password-file", f.dynsecPassFile)
	if err != nil {
		return nil, err
	}
	if admin == "" {
		return nil, cli.Usagef("--dynsec-password-file: required (the registry service logs in with it)")
	}
	// The administrator is bound to its client id, as devices are to
	// theirs: only the bridge's principal has ids of its choosing.
	svcs := []dynsec.Service{{Username: f.dynsecUser, Secret: admin, ClientID: f.dynsecClientID, Role: "drover-dynsec-admin", ACLs: dynsec.AdminACLs()}}
	bridge, err := cli.ReadSecretFile("bridge-password-file", f.bridgePassFile)
	if err != nil {
		return nil, err
	}
	if bridge != "" {
		svcs = append(svcs, dynsec.Service{Username: f.bridgeUser, Secret: bridge, Role: "drover-bridge", ACLs: dynsec.RoleACLs(registry.BridgeACL(), true)})
	}
	return svcs, nil
}
