package ingress

import (
	"encoding/binary"
	"net"
	"strconv"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// proxyV2Signature opens every version 2 PROXY protocol header.
var proxyV2Signature = []byte("\r\n\r\n\x00\r\nQUIT\n")

// proxyHeader is the PROXY protocol header (HAProxy's specification,
// text version 1 or binary version 2) that tells an instance which client
// connected to the node port and at which address, as HAProxy's
// send-proxy and send-proxy-v2 do. Addresses of two families, or not
// TCP at all, are sent as UNKNOWN (v1) or AF_UNSPEC (v2): the spec's way
// of saying "use the connection's own addresses".
func proxyHeader(version string, client, local net.Addr) []byte {
	src, _ := client.(*net.TCPAddr)
	dst, _ := local.(*net.TCPAddr)
	var srcIP, dstIP net.IP
	v4 := false
	if src != nil && dst != nil {
		switch s4, d4 := src.IP.To4(), dst.IP.To4(); {
		case s4 != nil && d4 != nil:
			srcIP, dstIP, v4 = s4, d4, true
		case s4 == nil && d4 == nil && len(src.IP) == net.IPv6len && len(dst.IP) == net.IPv6len:
			srcIP, dstIP = src.IP, dst.IP
		}
	}
	if version == v1.ProxyProtocolV1 {
		if srcIP == nil {
			return []byte("PROXY UNKNOWN\r\n")
		}
		family := "TCP6"
		if v4 {
			family = "TCP4"
		}
		b := make([]byte, 0, 108)
		b = append(b, "PROXY "+family+" "...)
		b = append(b, srcIP.String()...)
		b = append(b, ' ')
		b = append(b, dstIP.String()...)
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(src.Port), 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(dst.Port), 10)
		return append(b, "\r\n"...)
	}
	b := make([]byte, 0, 16+36)
	b = append(b, proxyV2Signature...)
	b = append(b, 0x21) // version 2, command PROXY
	switch {
	case srcIP == nil:
		return append(b, 0x00, 0, 0) // AF_UNSPEC, no addresses
	case v4:
		b = append(b, 0x11, 0, 12) // TCP over IPv4
	default:
		b = append(b, 0x21, 0, 36) // TCP over IPv6
	}
	b = append(b, srcIP...)
	b = append(b, dstIP...)
	b = binary.BigEndian.AppendUint16(b, uint16(src.Port))
	return binary.BigEndian.AppendUint16(b, uint16(dst.Port))
}
