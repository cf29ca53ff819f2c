package cli

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/dyno-platform/dyno/internal/client"
)

// Custom domains, their certificates and the platform CA: the heroku
// CLI's domains and certs commands, plus certs:ca.

func (s *session) domainsCommand() *cobra.Command {
	return s.appListCommand("domains", "list an app's domains", "domains", func(ctx context.Context, c *client.Client, name string) error {
		a, err := c.App(ctx, name)
		if err != nil {
			return err
		}
		domains, err := c.Domains(ctx, name)
		if err != nil {
			return err
		}
		fmt.Fprintf(s.stdout, "=== %s Heroku Domain\n", name)
		if u, err := url.Parse(a.WebURL); err == nil && u.Hostname() != "" {
			fmt.Fprintln(s.stdout, u.Hostname())
		}
		if len(domains) == 0 {
			return nil
		}
		fmt.Fprintf(s.stdout, "\n=== %s Custom Domains\n", name)
		tw := tabwriter.NewWriter(s.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "Domain Name\tDNS Record Type\tDNS Target\tSNI Endpoint")
		for _, d := range domains {
			sni := ""
			if d.SNIEndpoint != nil {
				sni = d.SNIEndpoint.Name
			}
			fmt.Fprintf(tw, "%s\tCNAME\t%s\t%s\n", d.Hostname, d.CNAME, sni)
		}
		return tw.Flush()
	})
}

func (s *session) domainsAddCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "domains:add HOSTNAME", Short: "add a custom domain to an app", Args: cobra.ExactArgs(1)}
	app := appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, name, err := s.target(*app)
		if err != nil {
			return err
		}
		fmt.Fprintf(s.stderr, "Adding %s to %s... ", args[0], name)
		d, err := c.AddDomain(cmd.Context(), name, args[0])
		if err != nil {
			fmt.Fprintln(s.stderr, "failed")
			return err
		}
		fmt.Fprintln(s.stderr, "done")
		fmt.Fprintf(s.stdout, "Configure your app's DNS provider to point %s to the DNS Target %s.\n", d.Hostname, d.CNAME)
		return nil
	}
	return cmd
}

func (s *session) domainsRemoveCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "domains:remove HOSTNAME", Short: "remove a custom domain from an app", Args: cobra.ExactArgs(1)}
	app := appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, name, err := s.target(*app)
		if err != nil {
			return err
		}
		fmt.Fprintf(s.stderr, "Removing %s from %s... ", args[0], name)
		if err := c.RemoveDomain(cmd.Context(), name, args[0]); err != nil {
			fmt.Fprintln(s.stderr, "failed")
			return err
		}
		fmt.Fprintln(s.stderr, "done")
		return nil
	}
	return cmd
}

func (s *session) certsCommand() *cobra.Command {
	return s.appListCommand("certs", "list an app's SSL certificates (SNI endpoints)", "sni-endpoints", func(ctx context.Context, c *client.Client, name string) error {
		list, err := c.SNIEndpoints(ctx, name)
		if err != nil {
			return err
		}
		if len(list) == 0 {
			fmt.Fprintf(s.stdout, "%s has no SSL certificates.\nUse `dyno certs:add CRT KEY -a %s` to add one.\n", name, name)
			return nil
		}
		tw := tabwriter.NewWriter(s.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "Name\tCommon Name(s)\tExpires\tTrusted\tType\tDomains")
		for _, e := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\tSNI\t%d\n", e.Name, strings.Join(e.SSLCert.CertDomains, ", "),
				e.SSLCert.ExpiresAt.UTC().Format("2006-01-02 15:04 MST"), titleBool(e.SSLCert.CASigned), len(e.Domains))
		}
		return tw.Flush()
	})
}

func titleBool(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

func (s *session) certsAddCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "certs:add CRT KEY", Short: "upload an SSL certificate (PEM chain and private key) for an app's custom domains", Args: cobra.ExactArgs(2)}
	app := appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, name, err := s.target(*app)
		if err != nil {
			return err
		}
		chain, err := os.ReadFile(args[0])
		if err != nil {
			return fmt.Errorf("read the certificate: %w", err)
		}
		key, err := os.ReadFile(args[1])
		if err != nil {
			return fmt.Errorf("read the private key: %w", err)
		}
		fmt.Fprintf(s.stderr, "Adding SSL certificate to %s... ", name)
		e, err := c.AddSNIEndpoint(cmd.Context(), name, string(chain), string(key))
		if err != nil {
			fmt.Fprintln(s.stderr, "failed")
			return err
		}
		fmt.Fprintln(s.stderr, "done")
		styledFields(s.stdout, [][2]string{
			{"Name", e.Name},
			{"Common Name(s)", strings.Join(e.SSLCert.CertDomains, ", ")},
			{"Expires At", e.SSLCert.ExpiresAt.UTC().Format("2006-01-02 15:04 MST")},
			{"Issuer", e.SSLCert.Issuer},
			{"Trusted", titleBool(e.SSLCert.CASigned)},
			{"Domains", strconv.Itoa(len(e.Domains))},
		})
		return nil
	}
	return cmd
}

func (s *session) certsRemoveCommand() *cobra.Command {
	var byName string
	cmd := &cobra.Command{Use: "certs:remove NAME", Short: "remove an SSL certificate from an app", Args: cobra.MaximumNArgs(1)}
	app := appFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, name, err := s.target(*app)
		if err != nil {
			return err
		}
		cert := byName
		if len(args) == 1 {
			cert = args[0]
		}
		if cert == "" {
			return errors.New("name the certificate: dyno certs:remove NAME -a APP (names are in `dyno certs`)")
		}
		fmt.Fprintf(s.stderr, "Removing SSL certificate %s from %s... ", cert, name)
		if err := c.RemoveSNIEndpoint(cmd.Context(), name, cert); err != nil {
			fmt.Fprintln(s.stderr, "failed")
			return err
		}
		fmt.Fprintln(s.stderr, "done")
		return nil
	}
	cmd.Flags().StringVar(&byName, "name", "", "name of the certificate (as heroku certs:remove --name)")
	return cmd
}

func (s *session) certsCACommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "certs:ca",
		Short: "print the platform CA certificate (trust it to reach apps over HTTPS: curl --cacert)",
		Args:  cobra.NoArgs,
	}
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := s.api()
		if err != nil {
			return err
		}
		pem, err := c.CA(cmd.Context())
		if err != nil {
			return err
		}
		if output == "" {
			_, err := s.stdout.Write(pem)
			return err
		}
		if err := os.WriteFile(output, pem, 0o644); err != nil {
			return fmt.Errorf("save the CA: %w", err)
		}
		fmt.Fprintf(s.stderr, "Saved the platform CA to %s: use it with curl --cacert %s https://<app>.<domain>:<port>/\n", output, output)
		return nil
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "save to this file instead of printing")
	return cmd
}
