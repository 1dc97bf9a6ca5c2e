// streamclient is a real Kubernetes streaming peer for the a3s-cri-streaming tests: it drives a
// streaming URL with client-go's own remotecommand (SPDY and WebSocket executors) and portforward
// packages, the code kubelet and kubectl use.
//
//	streamclient exec        -url URL [-transport spdy|websocket] [-protocols P1,P2] [-stdin] [-tty] [-no-stderr] [-size WxH]...
//	streamclient portforward -url URL -port N [-transport spdy|websocket]
//
// exec copies its own stdin/stdout/stderr to the remote streams and exits with the remote exit
// code (or 125 with a message on stderr for a protocol error). portforward prints
// "ready <local-port>" once listening on 127.0.0.1 and forwards until its stdin closes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	utilexec "k8s.io/client-go/util/exec"
)

const protocolErrorExit = 125

func main() {
	if len(os.Args) < 2 {
		fail("usage: streamclient exec|portforward -url URL ...")
	}
	switch os.Args[1] {
	case "exec":
		runExec(os.Args[2:])
	case "portforward":
		runPortForward(os.Args[2:])
	default:
		fail("unknown command " + os.Args[1])
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "streamclient:", msg)
	os.Exit(protocolErrorExit)
}

// sizeList is a queue of terminal sizes sent one after another on the resize stream.
type sizeList []remotecommand.TerminalSize

func (s *sizeList) String() string { return fmt.Sprint(*s) }
func (s *sizeList) Set(v string) error {
	w, h, ok := strings.Cut(v, "x")
	if !ok {
		return errors.New("size must be WxH")
	}
	wi, err := strconv.Atoi(w)
	if err != nil {
		return err
	}
	hi, err := strconv.Atoi(h)
	if err != nil {
		return err
	}
	*s = append(*s, remotecommand.TerminalSize{Width: uint16(wi), Height: uint16(hi)})
	return nil
}

type sizeQueue struct {
	sizes chan remotecommand.TerminalSize
}

func (q *sizeQueue) Next() *remotecommand.TerminalSize {
	s, ok := <-q.sizes
	if !ok {
		return nil
	}
	return &s
}

func runExec(args []string) {
	fs := flag.NewFlagSet("exec", flag.ExitOnError)
	rawURL := fs.String("url", "", "streaming URL returned by Exec or Attach")
	transport := fs.String("transport", "spdy", "spdy or websocket")
	stdin := fs.Bool("stdin", false, "send this process's stdin")
	tty := fs.Bool("tty", false, "request a terminal")
	noStderr := fs.Bool("no-stderr", false, "do not open the stderr stream")
	protocols := fs.String("protocols", "", "comma-separated stream protocols to offer (default: client-go's)")
	var sizes sizeList
	fs.Var(&sizes, "size", "terminal size WxH to send (repeatable)")
	_ = fs.Parse(args)
	u, err := url.Parse(*rawURL)
	if err != nil || *rawURL == "" {
		fail("a valid -url is required")
	}
	config := &rest.Config{Host: u.Scheme + "://" + u.Host}
	var exec remotecommand.Executor
	switch *transport {
	case "spdy":
		if *protocols == "" {
			exec, err = remotecommand.NewSPDYExecutor(config, http.MethodPost, u)
		} else {
			var rt http.RoundTripper
			var upgrader spdy.Upgrader
			if rt, upgrader, err = spdy.RoundTripperFor(config); err == nil {
				exec, err = remotecommand.NewSPDYExecutorForProtocols(rt, upgrader, http.MethodPost, u,
					strings.Split(*protocols, ",")...)
			}
		}
	case "websocket":
		if *protocols == "" {
			exec, err = remotecommand.NewWebSocketExecutor(config, http.MethodGet, u.String())
		} else {
			exec, err = remotecommand.NewWebSocketExecutorForProtocols(config, http.MethodGet, u.String(),
				strings.Split(*protocols, ",")...)
		}
	default:
		fail("unknown transport " + *transport)
	}
	if err != nil {
		fail(err.Error())
	}
	opts := remotecommand.StreamOptions{Stdout: os.Stdout, Tty: *tty}
	if *stdin {
		opts.Stdin = os.Stdin
	}
	if !*noStderr && !*tty {
		opts.Stderr = os.Stderr
	}
	if *tty {
		q := &sizeQueue{sizes: make(chan remotecommand.TerminalSize, len(sizes))}
		for _, s := range sizes {
			q.sizes <- s
		}
		close(q.sizes)
		opts.TerminalSizeQueue = q
	}
	err = exec.StreamWithContext(context.Background(), opts)
	var exitErr utilexec.CodeExitError
	switch {
	case err == nil:
		os.Exit(0)
	case errors.As(err, &exitErr):
		os.Exit(exitErr.Code)
	default:
		fail(err.Error())
	}
}

func runPortForward(args []string) {
	fs := flag.NewFlagSet("portforward", flag.ExitOnError)
	rawURL := fs.String("url", "", "streaming URL returned by PortForward")
	port := fs.Int("port", 0, "port in the pod")
	transport := fs.String("transport", "spdy", "spdy or websocket")
	_ = fs.Parse(args)
	u, err := url.Parse(*rawURL)
	if err != nil || *rawURL == "" || *port == 0 {
		fail("-url and -port are required")
	}
	config := &rest.Config{Host: u.Scheme + "://" + u.Host}
	rt, upgrader, err := spdy.RoundTripperFor(config)
	if err != nil {
		fail(err.Error())
	}
	var dialer httpstream.Dialer = spdy.NewDialer(upgrader, &http.Client{Transport: rt}, http.MethodPost, u)
	if *transport == "websocket" {
		if dialer, err = portforward.NewSPDYOverWebsocketDialer(u, config); err != nil {
			fail(err.Error())
		}
	} else if *transport != "spdy" {
		fail("unknown transport " + *transport)
	}
	stop := make(chan struct{})
	ready := make(chan struct{})
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"},
		[]string{fmt.Sprintf("0:%d", *port)}, stop, ready, io.Discard, os.Stderr)
	if err != nil {
		fail(err.Error())
	}
	go func() {
		// The test closes our stdin to end the session.
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(stop)
	}()
	go func() {
		<-ready
		ports, err := fw.GetPorts()
		if err != nil || len(ports) != 1 {
			fail(fmt.Sprintf("no forwarded port: %v", err))
		}
		fmt.Printf("ready %d\n", ports[0].Local)
	}()
	if err := fw.ForwardPorts(); err != nil {
		fail(err.Error())
	}
}
