# Two SO_REUSEPORT listeners on one port (old, new); N clients connect while both are
# bound; the old one closes without accepting what is queued; count the clients reset.
import socket, sys
N = int(sys.argv[1]) if len(sys.argv) > 1 else 200
def listener(port=0):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", port)); s.listen(4096); return s
old = listener(); port = old.getsockname()[1]; new = listener(port)
clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(N)]
for c in clients: c.sendall(b"GET / HTTP/1.1\r\n\r\n")
old.close()
new.setblocking(False); accepted = 0; kept = []
try:
    while True: kept.append(new.accept()[0]); accepted += 1
except BlockingIOError: pass
reset = 0
for c in clients:
    c.settimeout(0.2)
    try: c.recv(1)
    except ConnectionResetError: reset += 1
    except socket.timeout: pass
print(f"SO_REUSEPORT: {N} connections, {accepted} accepted by the new socket, {reset} reset when the old one closed")
