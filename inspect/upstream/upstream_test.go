package upstream

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/clawpatrol/clawpatrol/config"
)

func TestLocalAddressesAreRefused(t *testing.T) {
	d := NewDialer()
	for _, ip := range []string{"127.0.0.1", "169.254.169.254", "::1", "fe80::1", "198.18.0.5", "224.0.0.1", "0.0.0.0"} {
		_, err := d.Address(context.Background(), Target{IP: netip.MustParseAddr(ip), Port: 80})
		var local *LocalError
		if !errors.As(err, &local) {
			t.Errorf("%s: want a LocalError, got %v", ip, err)
		}
	}
	if addr, err := d.Address(context.Background(), Target{IP: netip.MustParseAddr("192.0.2.7"), Port: 443}); err != nil || addr != "192.0.2.7:443" {
		t.Errorf("a remote literal: %q %v", addr, err)
	}
	// An endpoint's upstream is dialled as configured, local or not.
	e := &config.Endpoint{Name: "svc", Upstream: "127.0.0.1:8080"}
	if addr, err := d.Address(context.Background(), Target{Host: "svc.test", Port: 80, Endpoint: e}); err != nil || addr != "127.0.0.1:8080" {
		t.Errorf("mapped upstream: %q %v", addr, err)
	}
}

func TestServerName(t *testing.T) {
	e := &config.Endpoint{Upstream: "db.internal:5432"}
	for _, tc := range []struct {
		t        Target
		override string
		want     string
	}{
		{Target{Host: "api.test"}, "", "api.test"},
		{Target{Host: "api.test"}, "other", "other"},
		{Target{IP: netip.MustParseAddr("10.0.0.1"), Endpoint: e}, "", "db.internal"},
		{Target{IP: netip.MustParseAddr("10.0.0.1")}, "", "10.0.0.1"},
	} {
		if got := tc.t.ServerName(tc.override); got != tc.want {
			t.Errorf("%+v: got %q, want %q", tc.t, got, tc.want)
		}
	}
}
