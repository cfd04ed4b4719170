package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gantry-dev/gantry/client"
	"github.com/gantry-dev/gantry/internal/apiserver"
	"github.com/gantry-dev/gantry/internal/pki"
)

// nodeIdentity is an agent's identity as it stands: a renewal replaces it
// while the agent runs, and the API client, the agent's listener and the
// registry credentials read it at each use.
type nodeIdentity struct {
	path string // identity.json, rewritten on renewal

	mu         sync.RWMutex
	id         identity
	cert       *tls.Certificate // client certificate, for the API server
	serverCert *tls.Certificate // the agent listener's
}

func newNodeIdentity(path string, id *identity) (*nodeIdentity, error) {
	n := &nodeIdentity{path: path}
	if err := n.set(*id); err != nil {
		return nil, err
	}
	return n, nil
}

// set checks that id's certificates go with its key and makes it current.
func (n *nodeIdentity) set(id identity) error {
	cert, serverCert, err := keyPairs(id)
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.id, n.cert, n.serverCert = id, cert, serverCert
	n.mu.Unlock()
	return nil
}

// keyPairs parses id's client and listener certificates with its key.
func keyPairs(id identity) (cert, serverCert *tls.Certificate, err error) {
	c, err := tls.X509KeyPair([]byte(id.Certificate), []byte(id.Key))
	if err != nil {
		return nil, nil, fmt.Errorf("node certificate: %w", err)
	}
	sc, err := tls.X509KeyPair([]byte(id.ServerCert), []byte(id.Key))
	if err != nil {
		return nil, nil, fmt.Errorf("agent listener certificate: %w", err)
	}
	return &c, &sc, nil
}

func (n *nodeIdentity) current() identity {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.id
}

func (n *nodeIdentity) clientCert(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.cert, nil
}

func (n *nodeIdentity) listenerCert(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.serverCert, nil
}

// expires is when the node certificate ends.
func (n *nodeIdentity) expires() time.Time {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.cert.Leaf.NotAfter
}

// renewIfDue renews the identity when its certificate is within
// pki.RenewBefore of its end (30 days of a year), and reports whether it
// did.
func (n *nodeIdentity) renewIfDue(ctx context.Context, api *client.Client, now time.Time) (bool, error) {
	n.mu.RLock()
	due := pki.NeedsRenewal(n.cert.Leaf, now)
	n.mu.RUnlock()
	if !due {
		return false, nil
	}
	return true, n.renew(ctx, api)
}

// renew trades the current certificate for new ones, for a new key: the
// server signs them and replaces the node's registry credential, as a join
// does. identity.json is rewritten (a new file renamed over the old) before
// the new identity is used.
func (n *nodeIdentity) renew(ctx context.Context, api *client.Client) error {
	cur := n.current()
	key, err := pki.NewKey()
	if err != nil {
		return err
	}
	csr, err := pki.NodeCSR(cur.Node, key)
	if err != nil {
		return err
	}
	var jr apiserver.JoinResponse
	if _, err := api.Do(ctx, http.MethodPost, "/api/v1/join/renew", nil, apiserver.RenewRequest{CSR: string(csr)}, &jr); err != nil {
		return fmt.Errorf("renew the identity of node %s: %w", cur.Node, err)
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		return err
	}
	next := cur
	next.Certificate, next.ServerCert, next.Key, next.RegistryToken = jr.Certificate, jr.ServerCertificate, string(keyPEM), jr.RegistryToken
	if jr.Registry != "" {
		next.Registry = jr.Registry
	}
	leaf, err := pki.ParseCert([]byte(jr.Certificate))
	if err != nil {
		return fmt.Errorf("renewed node certificate: %w", err)
	}
	if name, ok := pki.NodeFromCert(leaf); !ok || name != cur.Node {
		return fmt.Errorf("the renewed certificate is for %q, not node %s", name, cur.Node)
	}
	// Nothing the agent could not start from reaches the file.
	if _, _, err := keyPairs(next); err != nil {
		return fmt.Errorf("renewed identity: %w", err)
	}
	if err := writeIdentity(n.path, &next); err != nil {
		return err
	}
	return n.set(next)
}

// keepRenewed checks the certificate now and every few hours, and renews
// it when due; a failed renewal is tried again ten minutes later.
func (n *nodeIdentity) keepRenewed(ctx context.Context, api *client.Client, log *slog.Logger) {
	for {
		wait := 6 * time.Hour
		renewed, err := n.renewIfDue(ctx, api, time.Now())
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("node certificate renewal failed; retrying in 10 minutes", "err", err, "expires", n.expires())
			wait = 10 * time.Minute
		case renewed:
			log.Info("node certificate renewed", "expires", n.expires())
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// writeIdentity writes id to path through a new file renamed over the
// old, so that a crash leaves one whole identity or the other.
func writeIdentity(path string, id *identity) error {
	b, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return err
	}
	if err := pki.WriteFileAtomic(path, b, 0o600); err != nil {
		return fmt.Errorf("write the node identity: %w", err)
	}
	return nil
}
