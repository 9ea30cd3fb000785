package run

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A few rtnetlink messages on x/sys/unix: bringing up lo and tun0, one
// address per family and the default routes. Five messages do not justify a
// netlink library in the most security-sensitive path of the program.

type netlinkSocket struct {
	fd  int
	seq uint32
}

func openNetlink() (*netlinkSocket, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink bind: %w", err)
	}
	return &netlinkSocket{fd: fd}, nil
}

func (s *netlinkSocket) Close() { unix.Close(s.fd) }

func rtattr(typ uint16, data []byte) []byte {
	l := unix.SizeofRtAttr + len(data)
	b := make([]byte, (l+3)&^3)
	binary.NativeEndian.PutUint16(b[0:], uint16(l))
	binary.NativeEndian.PutUint16(b[2:], typ)
	copy(b[4:], data)
	return b
}

func u32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

func bytesOf[T any](v *T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(v)), unsafe.Sizeof(*v))
}

// request sends one message with NLM_F_ACK and waits for its ack.
func (s *netlinkSocket) request(typ, flags uint16, body []byte, attrs ...[]byte) error {
	s.seq++
	msg := make([]byte, unix.SizeofNlMsghdr, 256)
	msg = append(msg, body...)
	for _, a := range attrs {
		msg = append(msg, a...)
	}
	h := (*unix.NlMsghdr)(unsafe.Pointer(&msg[0]))
	*h = unix.NlMsghdr{Len: uint32(len(msg)), Type: typ, Flags: unix.NLM_F_REQUEST | unix.NLM_F_ACK | flags, Seq: s.seq}
	if err := unix.Sendto(s.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 4096)
	for {
		n, _, err := unix.Recvfrom(s.fd, buf, 0)
		if err != nil {
			return err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.Header.Seq != s.seq || m.Header.Type != unix.NLMSG_ERROR || len(m.Data) < 4 {
				continue
			}
			if errno := int32(binary.NativeEndian.Uint32(m.Data[0:4])); errno != 0 {
				return unix.Errno(-errno)
			}
			return nil
		}
	}
}

func (s *netlinkSocket) linkUp(index, mtu int) error {
	ifi := unix.IfInfomsg{Family: unix.AF_UNSPEC, Index: int32(index), Flags: unix.IFF_UP, Change: unix.IFF_UP}
	var attrs [][]byte
	if mtu > 0 {
		attrs = append(attrs, rtattr(unix.IFLA_MTU, u32(uint32(mtu))))
	}
	return s.request(unix.RTM_NEWLINK, 0, bytesOf(&ifi), attrs...)
}

func (s *netlinkSocket) addAddr(index int, p netip.Prefix) error {
	family := uint8(unix.AF_INET)
	if p.Addr().Is6() {
		family = unix.AF_INET6
	}
	// NODAD: a TUN is IFF_NOARP and skips DAD anyway, but a v6 address
	// stuck "tentative" would make every v6 connect fail for two seconds.
	ifa := unix.IfAddrmsg{Family: family, Prefixlen: uint8(p.Bits()), Flags: unix.IFA_F_NODAD, Scope: unix.RT_SCOPE_UNIVERSE, Index: uint32(index)}
	a := p.Addr().AsSlice()
	return s.request(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL, bytesOf(&ifa),
		rtattr(unix.IFA_LOCAL, a), rtattr(unix.IFA_ADDRESS, a), rtattr(unix.IFA_FLAGS, u32(unix.IFA_F_NODAD)))
}

func (s *netlinkSocket) addDefaultRoute(index int, v6 bool) error {
	rt := unix.RtMsg{Family: unix.AF_INET, Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_BOOT, Scope: unix.RT_SCOPE_LINK, Type: unix.RTN_UNICAST}
	if v6 {
		rt.Family, rt.Scope = unix.AF_INET6, unix.RT_SCOPE_UNIVERSE
	}
	return s.request(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_EXCL, bytesOf(&rt), rtattr(unix.RTA_OIF, u32(uint32(index))))
}

func interfaceIndex(name string) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
		return 0, err
	}
	return int(ifr.Uint32()), nil
}

// configureNetwork brings up lo and the TUN device, gives it one address per
// family and routes everything through it.
func configureNetwork(tun string, mtu int, ip4, ip6 netip.Prefix) error {
	s, err := openNetlink()
	if err != nil {
		return err
	}
	defer s.Close()
	index, err := interfaceIndex(tun)
	if err != nil {
		return fmt.Errorf("ifindex %s: %w", tun, err)
	}
	if err := s.linkUp(1, 0); err != nil { // lo is ifindex 1 in a new netns
		return fmt.Errorf("lo up: %w", err)
	}
	if err := s.linkUp(index, mtu); err != nil {
		return fmt.Errorf("%s up: %w", tun, err)
	}
	if err := s.addAddr(index, ip4); err != nil {
		return fmt.Errorf("%s address %v: %w", tun, ip4, err)
	}
	if err := s.addDefaultRoute(index, false); err != nil {
		return fmt.Errorf("default route: %w", err)
	}
	if err := s.addAddr(index, ip6); err != nil {
		return fmt.Errorf("%s address %v: %w", tun, ip6, err)
	}
	if err := s.addDefaultRoute(index, true); err != nil {
		return fmt.Errorf("default v6 route: %w", err)
	}
	return nil
}
