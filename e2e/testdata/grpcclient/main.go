// Command grpcclient is the e2e tests' gRPC client: it calls the health
// service at ADDR over TLS, trusting the system roots (inside clawpatrol run:
// the agent's bundle), and prints one line per result.
//
//	check SERVING            unary Check("svc")
//	watch SERVING ... end    server-streaming Watch("svc"), every message
//	list ERROR CODE: MSG     unary List, which the tests' policy denies
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: grpcclient HOST:PORT")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "grpcclient:", err)
		os.Exit(1)
	}
}

func run(addr string) error {
	// A bound, not a timing assertion: a hung call fails the test.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{})))
	if err != nil {
		return err
	}
	defer conn.Close()
	c := healthpb.NewHealthClient(conn)

	resp, err := c.Check(ctx, &healthpb.HealthCheckRequest{Service: "svc"})
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	fmt.Println("check", resp.GetStatus())

	w, err := c.Watch(ctx, &healthpb.HealthCheckRequest{Service: "svc"})
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	fmt.Print("watch")
	for {
		m, err := w.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("watch: %w", err)
		}
		fmt.Print(" ", m.GetStatus())
	}
	fmt.Println(" end")

	_, err = c.List(ctx, &healthpb.HealthListRequest{})
	if err == nil {
		fmt.Println("list ok")
		return nil
	}
	s := status.Convert(err)
	fmt.Printf("list ERROR %s: %s\n", s.Code(), s.Message())
	return nil
}
