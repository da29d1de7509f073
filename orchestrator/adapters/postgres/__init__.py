"""PostgreSQL adapters: migrations, the Supabase emulation, the store and LISTEN/NOTIFY."""
