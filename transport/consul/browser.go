package consul

// Browsers: the CORS policy and the body rule are lieur's own
// (transport/httpapi's CORSPolicy, HasBody, IsJSON), applied in
// ServeHTTP with Consul's headers. Consul's clients send their bodies
// with PUT, which browsers never send cross-origin without a preflight,
// so only a POST with a body that is not JSON is refused (415).
