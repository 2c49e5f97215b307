package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tasker-go/tasker"
)

// webhookSource is where the webhook commands read: the database, or a
// server's API.
type webhookSource interface {
	Webhooks(ctx context.Context, namespace string) ([]*tasker.WebhookInfo, error)
	Deliveries(ctx context.Context, opts *tasker.DeliveryListOpts) ([]*tasker.Delivery, error)
	Delivery(ctx context.Context, id string) (*tasker.Delivery, error)
	RetryDelivery(ctx context.Context, id string) (*tasker.Delivery, error)
}

// withWebhooks runs fn against the server of --server, or else the
// database.
func withWebhooks(ctx context.Context, e *env, fn func(webhookSource) error) error {
	rc, err := e.remote()
	if err != nil {
		return err
	}
	if rc != nil {
		return fn(rc)
	}
	c, err := e.open(ctx, tasker.Config{})
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(c)
}

func newWebhookCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "webhook",
		Short: "List webhook subscriptions and their delivery counts",
	}
	var (
		namespace string
		jsonOut   bool
	)
	list := &cobra.Command{
		Use:   "list",
		Short: "List the webhook subscriptions of templates and of the subscriptions file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withWebhooks(cmd.Context(), e, func(src webhookSource) error {
				subs, err := src.Webhooks(cmd.Context(), namespace)
				if err != nil {
					return exitWith(ExitUsage, err)
				}
				if jsonOut {
					return writeJSON(e.stdout, map[string]any{"webhooks": nonNil(subs)})
				}
				tw := tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tEVENTS\tURL\tPENDING\tDELIVERED\tFAILED")
				for _, s := range subs {
					id := s.ID
					if !s.Active {
						id += " (removed)"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\n", id, strings.Join(s.Events, ","), s.URL, s.Pending, s.Delivered, s.Failed)
				}
				return tw.Flush()
			})
		},
	}
	list.Flags().StringVar(&namespace, "namespace", "", "only the subscriptions of this namespace")
	list.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	cmd.AddCommand(list)
	return cmd
}

func newDeliveryCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delivery",
		Short: "List, show and retry webhook deliveries",
	}
	cmd.AddCommand(newDeliveryListCmd(e), newDeliveryShowCmd(e), newDeliveryRetryCmd(e))
	return cmd
}

func newDeliveryListCmd(e *env) *cobra.Command {
	var (
		opts    tasker.DeliveryListOpts
		jsonOut bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List webhook deliveries, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withWebhooks(cmd.Context(), e, func(src webhookSource) error {
				ds, err := src.Deliveries(cmd.Context(), &opts)
				if err != nil {
					return exitWith(ExitUsage, err)
				}
				if jsonOut {
					return writeJSON(e.stdout, map[string]any{"deliveries": nonNil(ds)})
				}
				tw := tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tWEBHOOK\tEVENT\tTASK\tSTATE\tATTEMPTS\tDETAILS")
				for _, d := range ds {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", d.ID, d.SubscriptionID, d.Event, d.TaskID, d.State, d.Attempts, deliveryDetails(d))
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().StringVar(&opts.SubscriptionID, "webhook", "", "only the deliveries of this subscription id (see tasker webhook list)")
	cmd.Flags().StringVar(&opts.State, "state", "", "only deliveries in this state: pending, delivered or failed")
	cmd.Flags().StringVar(&opts.TaskID, "task", "", "only the deliveries of this task")
	cmd.Flags().IntVar(&opts.Limit, "limit", 50, "maximum number of deliveries")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	return cmd
}

func deliveryDetails(d *tasker.Delivery) string {
	var parts []string
	switch d.State {
	case tasker.DeliveryDelivered:
		parts = append(parts, "at "+d.DeliveredAt.Local().Format(time.DateTime))
	case tasker.DeliveryPending:
		if d.Attempts > 0 {
			parts = append(parts, "next "+d.NextAttemptAt.Local().Format(time.TimeOnly))
		}
	}
	if d.LastStatus != 0 {
		parts = append(parts, fmt.Sprintf("HTTP %d", d.LastStatus))
	}
	if d.LastError != "" && d.State != tasker.DeliveryDelivered {
		msg := firstLine(d.LastError)
		if len(msg) > 80 {
			msg = msg[:80] + "…"
		}
		parts = append(parts, msg)
	}
	return strings.Join(parts, "; ")
}

func newDeliveryShowCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "show DELIVERY_ID",
		Short: "Show a delivery with the body it sends, as JSON",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withWebhooks(cmd.Context(), e, func(src webhookSource) error {
				d, err := src.Delivery(cmd.Context(), args[0])
				if err != nil {
					return exitWith(ExitUsage, err)
				}
				return writeJSON(e.stdout, map[string]any{"delivery": d})
			})
		},
	}
}

func newDeliveryRetryCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "retry DELIVERY_ID",
		Short: "Send a failed (or delivered) delivery again, with a fresh attempt budget",
		Long: `Retry makes a failed or delivered delivery pending again, due now, with the
same delivery id and a fresh attempt budget. A running tasker serve or worker
on the database sends it within a second; so does the next tasker run or resume.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withWebhooks(cmd.Context(), e, func(src webhookSource) error {
				d, err := src.RetryDelivery(tasker.WithActor(cmd.Context(), "command line"), args[0])
				if err != nil {
					return exitWith(ExitUsage, err)
				}
				fmt.Fprintf(e.stdout, "delivery %s is %s\n", d.ID, d.State)
				return nil
			})
		},
	}
}
