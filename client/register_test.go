package client

import (
	"errors"
	"net/http"
	"testing"

	"github.com/lieur/lieur/transport/wire"
)

func TestRegisterAndClose(t *testing.T) {
	tab := newTable()
	c, att := newTestClient(t, urlsOf(newFakeBinder(t, "n1", tab), newFakeBinder(t, "n2", tab)), nil)
	ctx := testCtx(t)

	reg, err := c.Register(ctx, Registration{Type: "web", Address: "10.0.0.1", Port: 80, Meta: map[string]string{"v": "1"}})
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	if reg.ID() != "web-10.0.0.1-80" {
		t.Errorf("id %q, want the binder's default web-10.0.0.1-80", reg.ID())
	}
	if reg.Index() == 0 || !tab.has(reg.ID()) {
		t.Fatalf("registration %q at index %d not in the table", reg.ID(), reg.Index())
	}
	list, idx, err := c.ServicesOf(ctx, "web")
	if err != nil || len(list) != 1 || list[0].ID != reg.ID() || list[0].Meta["v"] != "1" || idx != reg.Index() {
		t.Fatalf("ServicesOf = %+v, %d, %v", list, idx, err)
	}

	if err := reg.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if tab.has(reg.ID()) {
		t.Fatalf("%s still registered after Close", reg.ID())
	}
	att.take()
	if err := reg.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if n := att.count(); n != 0 {
		t.Errorf("second Close made %d requests", n)
	}
}

func TestRegisterKeepsGivenID(t *testing.T) {
	tab := newTable()
	c, _ := newTestClient(t, urlsOf(newFakeBinder(t, "n1", tab)), nil)
	ctx := testCtx(t)
	for range 2 { // registering an id again replaces it
		reg, err := c.Register(ctx, Registration{Type: "web", Address: "10.0.0.1", Port: 80, ID: "web-a"})
		if err != nil || reg.ID() != "web-a" {
			t.Fatalf("Register = %v, %v", reg, err)
		}
	}
	list, _, err := c.Services(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("Services = %+v, %v; want one instance", list, err)
	}
}

func TestRegisteredCloseWhenAlreadyGone(t *testing.T) {
	tab := newTable()
	c, _ := newTestClient(t, urlsOf(newFakeBinder(t, "n1", tab)), nil)
	ctx := testCtx(t)
	reg, err := c.Register(ctx, Registration{Type: "web", Address: "10.0.0.1", Port: 80})
	if err != nil {
		t.Fatal(err)
	}
	tab.remove(reg.ID())
	if err := reg.Close(ctx); err != nil {
		t.Errorf("Close of a removed registration: %v, want nil", err)
	}
}

func TestRegisteredCloseFailureCanBeRetried(t *testing.T) {
	tab := newTable()
	b := newFakeBinder(t, "n1", tab)
	c, _ := newTestClient(t, urlsOf(b), nil)
	ctx := testCtx(t)
	reg, err := c.Register(ctx, Registration{Type: "web", Address: "10.0.0.1", Port: 80})
	if err != nil {
		t.Fatal(err)
	}
	b.setInject(failWith(http.StatusServiceUnavailable, wire.CodeOutcomeUnknown))
	if err := reg.Close(ctx); !errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("Close = %v, want ErrOutcomeUnknown", err)
	}
	b.setInject(func(http.ResponseWriter, *http.Request) bool { return false })
	if err := reg.Close(ctx); err != nil || tab.has(reg.ID()) {
		t.Fatalf("retried Close = %v (still registered: %v)", err, tab.has(reg.ID()))
	}
}

func TestServicesIndex(t *testing.T) {
	tab := newTable()
	tab.register(wire.Instance{ID: "b", Type: "web", Address: "h", Port: 1})
	tab.register(wire.Instance{ID: "a", Type: "web", Address: "h", Port: 2})
	last := tab.register(wire.Instance{ID: "c", Type: "db", Address: "h", Port: 3})
	c, _ := newTestClient(t, urlsOf(newFakeBinder(t, "n1", tab)), nil)
	ctx := testCtx(t)

	all, idx, err := c.Services(ctx)
	if err != nil || idx != last {
		t.Fatalf("Services: index %d, %v; want %d", idx, err, last)
	}
	var ids []string
	for _, in := range all {
		ids = append(ids, in.ID)
	}
	if !equalStrings(ids, []string{"c", "a", "b"}) {
		t.Errorf("Services ids = %q, want sorted by type then id", ids)
	}

	gone, _ := tab.remove("c")
	list, idx, err := c.ServicesOf(ctx, "db")
	if !errors.Is(err, ErrUnknownService) || list != nil || idx != gone {
		t.Errorf("ServicesOf(emptied type) = %v, %d, %v; want nil, %d, ErrUnknownService", list, idx, err, gone)
	}
}
