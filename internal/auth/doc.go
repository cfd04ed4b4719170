// Package auth decides who is calling (authentication) and whether they may
// do what they ask (authorization).
//
// Tokens look like gtk_<id>_<secret>: the id names the Token object in the
// store, the secret is 256 random bits of which only the SHA-256 is stored,
// compared in constant time. The package does not know about HTTP routing;
// the API server and the registry ask it questions.
package auth
