"""webrtc room (see DESIGN.md §2): a WebRTC data-channel stack, sans-IO.

Modules (imported by name; this package imports nothing so that importing one piece, e.g.
the SCTP codec in a fuzzer, does not pull in OpenSSL):

- :mod:`.sdp`, :mod:`.candidate`: offer/answer text (RFC 8866, 8839, 8841), Chrome-shaped;
- :mod:`.stun`, :mod:`.ice`: STUN on aioice's codec (RFC 8489) and the ICE agent
  (RFC 8445, 8838 trickle, 7675 consent), plus a STUN binding server;
- :mod:`.dtls`, :mod:`.clienthello`: DTLS 1.2 over pyOpenSSL memory BIOs with a
  Chromium-shaped ClientHello; ClientHello reader and JA4/JA3;
- :mod:`.sctp`, :mod:`.dcep`, :mod:`.datachannel`: SCTP over DTLS and data channels;
- :mod:`.peerconnection`: the glue: one ``PeerConnection`` per remote peer.

The trio driver is :mod:`zmesh.io_trio.webrtc`; the transport is described in
``docs/transport-webrtc.md``.
"""
