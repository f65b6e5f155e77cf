//go:build !linux

package dns

// serveUDPRaw: elsewhere than Linux, serveUDP's portable loop serves.
func (s *Server) serveUDPRaw(*udpSocket) (bool, error) { return false, nil }
