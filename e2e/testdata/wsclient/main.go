// Command wsclient is the e2e tests' WebSocket client (gorilla/websocket,
// system roots). For each URL it prints either the echoed replies to two
// messages or the refused handshake's status, rule header and body.
package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

func main() {
	for _, u := range os.Args[1:] {
		if err := talk(u); err != nil {
			fmt.Fprintln(os.Stderr, "wsclient:", err)
			os.Exit(1)
		}
	}
}

func talk(u string) error {
	d := websocket.Dialer{HandshakeTimeout: 30 * time.Second}
	c, resp, err := d.Dial(u, nil)
	if err != nil {
		if resp == nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		fmt.Printf("%s refused %d %s %s\n", u, resp.StatusCode, resp.Header.Get("X-Clawpatrol-Rule"), strings.TrimSpace(string(body)))
		return nil
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	fmt.Print(u)
	for _, msg := range []string{"ping 1", "ping 2"} {
		if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			return err
		}
		_, got, err := c.ReadMessage()
		if err != nil {
			return err
		}
		fmt.Printf(" %q", got)
	}
	fmt.Println()
	return c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
}
