"""The cluster's desired and observed state in etcd: the client (store.py), the key layout
(keys.py, where every key family is spelled), and one module per record family with its
validation and its one reader. Imports only the top-level vcapp modules and the engines."""
