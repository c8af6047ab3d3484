-- Whether the client was told its key package pool is low since it last
-- published: a claim that leaves the pool below the low watermark tells it
-- once, and every publish makes it due again.
ALTER TABLE clients ADD COLUMN low_pool_notified boolean NOT NULL DEFAULT false;
