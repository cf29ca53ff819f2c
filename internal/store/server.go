package store

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// ServerConfig configures the embedded NATS server.
type ServerConfig struct {
	// Dir holds JetStream's files; it must be on a local filesystem.
	Dir string
	// Listen is the client address, host:port; port 0 picks a free one.
	Listen string
	// User and Password are the one client credential the server accepts.
	User, Password string
	// MaxMemory and MaxStore bound JetStream so it does not compete with
	// dynos for the host; zero picks 256 MiB and 8 GiB.
	MaxMemory, MaxStore int64
	// Cluster, when its Name is set, makes this server one node of a NATS
	// cluster; the zero value runs a single server.
	Cluster ClusterConfig
}

// ClusterConfig joins the embedded server to a NATS cluster: every node
// has the same Name and route credential, a NodeName of its own, and
// routes to the others' Listen addresses. JetStream then replicates
// streams and KV buckets across nodes (open the store with 3 replicas).
type ClusterConfig struct {
	// Name is the cluster's name, the same on every node.
	Name string
	// NodeName is this server's name, unique in the cluster and stable
	// across restarts: JetStream's Raft groups know their peers by it.
	NodeName string
	// Listen is the route address, host:port; port 0 picks a free one.
	Listen string
	// Peers are the other nodes' route addresses (host:port). Listing this
	// node too is harmless; nodes also learn each other's routes by gossip.
	Peers []string
	// User and Password authenticate routes, in both directions.
	User, Password string
}

// Server is an embedded NATS server with JetStream, persisted under Dir and
// syncing every write to disk before acknowledging it.
type Server struct {
	ns   *server.Server
	cfg  ServerConfig
	addr string
}

// StartServer starts the embedded NATS server and waits until it accepts
// clients.
func StartServer(cfg ServerConfig) (*Server, error) {
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("nats listen address %q: %w", cfg.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("nats listen port %q: %w", portStr, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	if cfg.MaxMemory == 0 {
		cfg.MaxMemory = 256 << 20
	}
	if cfg.MaxStore == 0 {
		cfg.MaxStore = 8 << 30
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create nats dir: %w", err)
	}
	opts := &server.Options{
		ServerName:         "dyno",
		Host:               host,
		Port:               port,
		Username:           cfg.User,
		Password:           cfg.Password,
		JetStream:          true,
		StoreDir:           filepath.Clean(cfg.Dir),
		SyncAlways:         true,
		JetStreamMaxMemory: cfg.MaxMemory,
		JetStreamMaxStore:  cfg.MaxStore,
		NoSigs:             true,
		NoLog:              true,
		MaxPayload:         4 << 20,
	}
	if cfg.Cluster.Name != "" {
		if err := clusterOptions(opts, cfg.Cluster); err != nil {
			return nil, err
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("create nats server: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("nats server on %s did not become ready in 30 s: is the port taken?", cfg.Listen)
	}
	addr := ns.Addr().String()
	return &Server{ns: ns, cfg: cfg, addr: addr}, nil
}

// clusterOptions sets the route listener, its credential and the routes to
// the peers.
func clusterOptions(opts *server.Options, c ClusterConfig) error {
	if c.NodeName == "" || c.User == "" || c.Password == "" {
		return fmt.Errorf("nats cluster %s: a node name and a route user and password are required", c.Name)
	}
	host, portStr, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("nats cluster listen address %q: %w", c.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("nats cluster listen port %q: %w", portStr, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts.ServerName = c.NodeName
	opts.Cluster = server.ClusterOpts{Name: c.Name, Host: host, Port: port, Username: c.User, Password: c.Password}
	for _, p := range c.Peers {
		if _, _, err := net.SplitHostPort(p); err != nil {
			return fmt.Errorf("nats cluster peer %q: %w (want host:port of its --cluster-listen)", p, err)
		}
		opts.Routes = append(opts.Routes, &url.URL{Scheme: "nats", User: url.UserPassword(c.User, c.Password), Host: p})
	}
	return nil
}

// ClusterAddr is the route listener's address (host:port), empty when the
// server is not clustered.
func (s *Server) ClusterAddr() string {
	if a := s.ns.ClusterAddr(); a != nil {
		return a.String()
	}
	return ""
}

// ClientURL is the nats:// URL clients dial.
func (s *Server) ClientURL() string { return "nats://" + s.addr }

// Connect opens a client connection to this server with its credential.
func (s *Server) Connect(name string) (*nats.Conn, error) {
	return Connect(s.ClientURL(), s.cfg.User, s.cfg.Password, name)
}

// Shutdown stops the server and waits until its files are closed.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// Connect dials a NATS server with a user and password. It keeps
// reconnecting forever: every role outlives a restart of the control plane.
func Connect(url, user, password, name string) (*nats.Conn, error) {
	nc, err := nats.Connect(url,
		nats.Name(name),
		nats.UserInfo(user, password),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.RetryOnFailedConnect(false),
	)
	if err != nil {
		return nil, fmt.Errorf("connect to nats at %s: %w", url, err)
	}
	return nc, nil
}
