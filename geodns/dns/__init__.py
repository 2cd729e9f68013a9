"""The DNS edge: parse a query, resolve it against the zones, encode the reply, serve UDP/TCP.

wire.py parses, answer.py resolves (pure), encode.py packs, handler.py applies the protocol
rules, fastpath.py and fastcache.py replay cached replies, server.py owns the sockets.
The edge sees pools only through the `answer.PoolSource` protocol.
"""
