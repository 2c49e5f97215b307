package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tasker-go/tasker"
)

func newTokenCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create, list and revoke API tokens",
		Long: `Tokens authenticate requests to "tasker serve". Each has a role — viewer (read
everything), operator (also create, cancel and retry tasks and act on steps) or
admin (also register templates) — and may be confined to one namespace, in
which case it sees nothing outside it. Only a hash of the secret is stored:
the secret is printed once, when the token is created.`,
	}
	cmd.AddCommand(newTokenCreateCmd(e), newTokenListCmd(e), newTokenRevokeCmd(e))
	return cmd
}

func newTokenCreateCmd(e *env) *cobra.Command {
	var (
		role, namespace, name string
		expires               time.Duration
		jsonOut               bool
	)
	cmd := &cobra.Command{
		Use:     "create --role admin|operator|viewer",
		Short:   "Create a token and print its secret (shown only once)",
		Example: "  tasker token create --role operator --namespace payments --expires 720h --name billing-service",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c, err := e.open(ctx, tasker.Config{})
			if err != nil {
				return err
			}
			defer c.Close()
			t, err := c.CreateToken(ctx, tasker.TokenRequest{Name: name, Role: role, Namespace: namespace, ExpiresIn: expires})
			if err != nil {
				return exitWith(ExitUsage, err)
			}
			if jsonOut {
				return writeJSON(e.stdout, t)
			}
			fmt.Fprintln(e.stdout, t.Secret)
			scope := "all namespaces"
			if t.Token.Namespace != "" {
				scope = "namespace " + t.Token.Namespace
			}
			exp := "never expires"
			if !t.Token.ExpiresAt.IsZero() {
				exp = "expires " + t.Token.ExpiresAt.Local().Format(time.DateTime)
			}
			fmt.Fprintf(e.stderr, "tasker: token %s: role %s, %s, %s. The secret above is shown only now.\n", t.Token.ID, t.Token.Role, scope, exp)
			return nil
		},
	}
	cmd.Flags().StringVar(&role, "role", "", "viewer, operator or admin (required)")
	cmd.Flags().StringVar(&namespace, "namespace", "", "confine the token to this namespace")
	cmd.Flags().StringVar(&name, "name", "", "a name for the audit trail, such as the service using it")
	cmd.Flags().DurationVar(&expires, "expires", 0, "expire after this long, such as 720h (default: never)")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the token and its secret as JSON")
	_ = cmd.MarkFlagRequired("role")
	return cmd
}

func newTokenListCmd(e *env) *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List tokens (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c, err := e.open(ctx, tasker.Config{})
			if err != nil {
				return err
			}
			defer c.Close()
			list, err := c.Tokens(ctx)
			if err != nil {
				return exitWith(ExitUsage, err)
			}
			if jsonOut {
				return writeJSON(e.stdout, map[string]any{"tokens": nonNil(list)})
			}
			tw := tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tROLE\tNAMESPACE\tCREATED\tSTATUS")
			now := time.Now()
			for _, t := range list {
				status := "active"
				switch {
				case !t.RevokedAt.IsZero():
					status = "revoked " + t.RevokedAt.Local().Format(time.DateTime)
				case !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt):
					status = "expired"
				case !t.ExpiresAt.IsZero():
					status = "expires " + t.ExpiresAt.Local().Format(time.DateTime)
				}
				ns := t.Namespace
				if ns == "" {
					ns = "*"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.Role, ns, t.CreatedAt.Local().Format(time.DateTime), status)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	return cmd
}

func newTokenRevokeCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke TOKEN_ID",
		Short: "Revoke a token at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := e.open(ctx, tasker.Config{})
			if err != nil {
				return err
			}
			defer c.Close()
			t, err := c.RevokeToken(ctx, args[0])
			if err != nil {
				return exitWith(ExitUsage, err)
			}
			fmt.Fprintf(e.stdout, "token %s revoked at %s\n", t.ID, t.RevokedAt.Local().Format(time.DateTime))
			return nil
		},
	}
}
