# SPDX-License-Identifier: MIT
"""What an operator runs to watch alerts: a plain AMQP consumer (pika) on its
own queue bound to baton.events, reading only the readable AMQP headers."""


class Alerts:
    """A plain AMQP consumer bound to baton.events, as an operator would run."""

    def __init__(self, broker):
        self.broker = broker
        self.seen = []
        self._open()

    def _open(self):
        self.conn = self.broker.pika_connection()
        self.ch = self.conn.channel()
        q = self.ch.queue_declare(queue='', exclusive=True)
        self.queue = q.method.queue
        self.ch.queue_bind(queue=self.queue, exchange='baton.events', routing_key='alert.#')

    def poll(self):
        while True:
            method, props, body = self.ch.basic_get(self.queue, auto_ack=True)
            if method is None:
                return self.seen
            h = props.headers or {}
            self.seen.append({'key': method.routing_key, 'type': props.type,
                              **{k: (v.decode() if isinstance(v, bytes) else v)
                                 for k, v in h.items()}})

    def find(self, kind, host, resolved='false'):
        self.poll()
        return [a for a in self.seen
                if a.get('kind') == kind and a.get('host') == host
                and a.get('resolved') == resolved]

    def reopen(self):
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001 - the broker restarted under it
            pass
        self._open()
