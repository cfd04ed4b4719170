// Package secrets seals the values of Secret objects before they reach the
// store and opens them again for the API server and the agents.
//
// It owns the envelope format and the master keys. Every Seal draws a fresh
// 256-bit data key, encrypts the values with it under AES-256-GCM and binds
// the ciphertext to the secret's namespace and name as additional data, so
// a sealed blob copied onto another secret does not open. The data key is
// itself encrypted ("wrapped") by the current master key and stored next to
// the ciphertext with that master key's ID. The master keys form a Keyring:
// the first key seals, every key opens, and Rotate moves every stored
// secret onto a new key before the old one is retired.
//
// Master keys come from GANTRY_MASTER_KEY or from a 0600 file in the data
// directory, created on first start. The package never logs, wraps into
// errors or otherwise emits a secret value or key; errors name the secret
// and the key ID only. It does not talk to etcd itself: Rotate works over
// the SecretStore interface the caller backs with the store.
package secrets
