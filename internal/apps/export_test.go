package apps

// KeepLast exposes keepLast to the external tests.
var KeepLast = keepLast
