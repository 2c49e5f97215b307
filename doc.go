// Package tasker is a durable, declarative, event-driven workflow engine.
//
// A task template (YAML) declares the steps of a workflow, their
// dependencies (a DAG), retry policies, handlers and a JSON Schema for the
// task context. A task is one run of a template: the engine runs its steps
// concurrently as the DAG allows, retries failures with exponential backoff
// and jitter, records every state change in an audit trail, and publishes
// every change as an event.
//
// The embedded SQLite store needs no setup:
//
//	client, err := tasker.Open(ctx, tasker.Config{
//		Database: "tasker.db",
//		Handlers: map[string]tasker.Handler{"charge_card": tasker.HandlerFunc(chargeCard)},
//	})
//	tmpl, err := client.LoadTemplateFile(ctx, "order.yaml")
//	created, err := client.CreateTask(ctx, tasker.TaskRequest{
//		Namespace: tmpl.Namespace, Name: tmpl.Name, Context: json.RawMessage(`{"order_id": 7}`),
//	})
//	err = client.Start(ctx, nil)
//	task, err := client.WaitTask(ctx, created.Task.ID)
//
// See docs/ for the architecture, the state machines, the event catalog and
// the template format.
package tasker

// Version is the version of this build of Tasker.
const Version = "0.1.0"
