# task: add
# expect: error
# threat: opens a network connection
import socket


def add(a, b):
    with socket.create_connection(("1.1.1.1", 80), timeout=2) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    return a + b
