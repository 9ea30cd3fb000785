// Command benchtool is the load generator of `make bench`: an echo server, a
// connection-latency client and a holder of many idle flows. It runs both on
// the host and inside `clawpatrol run`, so both paths are measured the same.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchtool echo|connlat|flows [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:7777", "address to listen on or dial")
	n := fs.Int("n", 1000, "connections (connlat) or flows (flows)")
	hold := fs.Duration("hold", 3*time.Second, "how long flows stay open")
	fs.Parse(os.Args[2:])
	switch os.Args[1] {
	case "echo":
		echo(*addr)
	case "connlat":
		connlat(*addr, *n)
	case "flows":
		flows(*addr, *n, *hold)
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", os.Args[1])
		os.Exit(2)
	}
}

func echo(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			io.Copy(c, c)
		}()
	}
}

// connlat: n × (connect, 16-byte request, 16-byte echo, close); prints
// "p50_us p99_us".
func connlat(addr string, n int) {
	// Resolve once: the figure is the cost of a connection, not of a lookup.
	tcpAddr, err := net.ResolveTCPAddr("tcp4", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	addr = tcpAddr.String()
	req := make([]byte, 16)
	resp := make([]byte, 16)
	lat := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		c.Write(req)
		if _, err := io.ReadFull(c, resp); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		c.Close()
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	fmt.Printf("%d %d\n", lat[n/2].Microseconds(), lat[n*99/100].Microseconds())
}

// flows holds n connections open, each echoing 16 bytes every 100 ms.
func flows(addr string, n int, hold time.Duration) {
	var wg sync.WaitGroup
	deadline := time.Now().Add(hold)
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			buf := make([]byte, 16)
			for time.Now().Before(deadline) {
				c.Write(buf)
				io.ReadFull(c, buf)
				time.Sleep(100 * time.Millisecond)
			}
		}()
	}
	fmt.Println("open")
	wg.Wait()
}
