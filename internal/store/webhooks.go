package store

import (
	"encoding/json"
	"time"
)

// Subscription is a stored webhook subscription: where it came from, what
// it matches, and how far into the event log it has been fanned out.
type Subscription struct {
	// ID is Source + "/" + Name.
	ID string
	// Source is "server" for a subscriptions file, or
	// "template:NAMESPACE/NAME@VERSION" for a template's subscriptions.
	Source string
	Name   string
	// Namespace, TaskName and Version keep the events of matching tasks;
	// empty matches any.
	Namespace string
	TaskName  string
	Version   string
	// Spec is the subscription's definition as JSON (events, URL, secret
	// reference, headers, retry); the store does not read it.
	Spec json.RawMessage
	// Cursor is the last event-log cursor fanned out into deliveries.
	Cursor int64
	// Active is false once the subscription was removed from its source.
	Active    bool
	CreatedAt time.Time
	UpdatedAt time.Time
	// Pending, Delivered and Failed count its deliveries (SubscriptionList).
	Pending, Delivered, Failed int
}

// SubscriptionSyncParams are the inputs of SubscriptionSync.
type SubscriptionSyncParams struct {
	// Source is the source whose subscriptions are replaced.
	Source string
	// Subscriptions are the source's subscriptions now; the others of the
	// source are deactivated. Each needs ID, Name and Spec.
	Subscriptions []*Subscription
	Now           time.Time
}

// SubscriptionListParams filter SubscriptionList.
type SubscriptionListParams struct {
	// Namespace keeps the subscriptions of that namespace only (those that
	// match every namespace are left out).
	Namespace string
	// ActiveOnly leaves out deactivated subscriptions.
	ActiveOnly bool
}

// SubscriptionAdvanceParams are the inputs of SubscriptionAdvance.
type SubscriptionAdvanceParams struct {
	ID string
	// From is the cursor the caller read; To the cursor it scanned up to.
	From, To int64
	// Deliveries are created for the matching events in (From, To].
	Deliveries []*Delivery
	Now        time.Time
}

// Delivery states.
const (
	DeliveryPending   = "pending"
	DeliveryDelivered = "delivered"
	DeliveryFailed    = "failed"
)

// Delivery is one event to deliver to one subscription, with its attempts.
type Delivery struct {
	// ID is the delivery id sent to the receiver, the same on every attempt.
	ID               string
	SubscriptionID   string
	SubscriptionName string
	EventCursor      int64
	EventName        string
	TaskID           string
	Namespace        string
	// Payload is the event document, as JSON.
	Payload json.RawMessage
	State   string
	// Attempts counts the attempts begun; it is also the claim token.
	Attempts      int
	NextAttemptAt time.Time
	// LastStatus is the HTTP status of the last attempt, 0 when there was
	// no answer; LastError says what went wrong.
	LastStatus  int
	LastError   string
	CreatedAt   time.Time
	UpdatedAt   time.Time
	DeliveredAt time.Time
}

// DeliveryClaimParams are the inputs of DeliveryClaim.
type DeliveryClaimParams struct {
	Now time.Time
	// Lease pushes the claimed deliveries' next attempt this far ahead, so
	// no other process sends them meanwhile.
	Lease time.Duration
	Limit int
}

// DeliveryFinishParams record the outcome of an attempt.
type DeliveryFinishParams struct {
	ID string
	// Attempt is the delivery's Attempts when it was claimed.
	Attempt int
	// State is DeliveryDelivered, DeliveryFailed, or DeliveryPending to
	// retry at NextAttemptAt.
	State         string
	NextAttemptAt time.Time
	LastStatus    int
	LastError     string
	Now           time.Time
}

// DeliveryListParams filter DeliveryList. Deliveries are listed newest
// first.
type DeliveryListParams struct {
	SubscriptionID string
	State          string
	TaskID         string
	// Namespace keeps deliveries of events of that namespace.
	Namespace string
	// Before continues a listing: deliveries with an id below it.
	Before string
	// Limit defaults to 100.
	Limit int
}
