"""The message contract: topic catalog, Avro schemas, codec and header names.

Declarations only: nothing in this package opens a connection or imports a Kafka client.
"""
