package session

import (
	"strings"
	"testing"
)

func TestNsswitchKeepsAllButHosts(t *testing.T) {
	host := "passwd: files systemd\nhosts: files mdns4_minimal [NOTFOUND=return] resolve dns myhostname\nnetworks: files dns\n"
	got := string(nsswitchConf([]byte(host)))
	if !strings.Contains(got, "passwd: files systemd\n") || strings.Contains(got, "resolve") || strings.Contains(got, "mdns") {
		t.Fatalf("nsswitch.conf:\n%s", got)
	}
	if !strings.Contains(got, "hosts: files dns\n") || strings.Count(got, "hosts:") != 1 {
		t.Fatalf("hosts line:\n%s", got)
	}
}

func TestResolvConfPointsAtOurResolver(t *testing.T) {
	got := string(resolvConf())
	if !strings.Contains(got, "nameserver 10.0.2.3\n") || strings.Contains(got, "search") {
		t.Fatalf("resolv.conf:\n%s", got)
	}
	if h := string(hostsFile()); !strings.HasPrefix(h, "127.0.0.1\tlocalhost") {
		t.Fatalf("hosts:\n%s", h)
	}
}
