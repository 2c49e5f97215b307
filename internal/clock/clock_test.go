package clock

import (
	"testing"
	"time"
)

func TestFakeTimers(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := NewFake(start)
	a := f.NewTimer(time.Second)
	b := f.NewTimer(3 * time.Second)
	f.Advance(500 * time.Millisecond)
	select {
	case <-a.C():
		t.Fatal("timer fired early")
	default:
	}
	f.Advance(500 * time.Millisecond)
	select {
	case at := <-a.C():
		if !at.Equal(start.Add(time.Second)) {
			t.Fatalf("fired at %v", at)
		}
	default:
		t.Fatal("timer did not fire at its deadline")
	}
	if !b.Stop() {
		t.Fatal("Stop of an active timer reported inactive")
	}
	f.Advance(time.Hour)
	select {
	case <-b.C():
		t.Fatal("stopped timer fired")
	default:
	}
	b.Reset(time.Second)
	f.Advance(time.Second)
	select {
	case <-b.C():
	default:
		t.Fatal("reset timer did not fire")
	}
	if z := f.NewTimer(0); z == nil {
		t.Fatal("nil timer")
	} else {
		select {
		case <-z.C():
		default:
			t.Fatal("zero-duration timer did not fire at once")
		}
	}
	if !f.Now().Equal(start.Add(time.Hour + 2*time.Second)) {
		t.Fatalf("Now = %v", f.Now())
	}
	var _ Clock = Real{}
	r := Real{}.NewTimer(time.Millisecond)
	<-r.C()
	if r.Reset(time.Hour) {
		t.Fatal("Reset of a fired real timer reported active")
	}
	r.Stop()
}
