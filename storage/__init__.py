"""storage: replicated app data on SeaweedFS: per-app volumes and S3 buckets, replica
placement across machines and sites, degrade and heal.

Must not touch: placement of app instances, containers beyond mounting volumes for them.
"""
