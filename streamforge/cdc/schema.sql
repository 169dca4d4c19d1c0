-- StreamForge OLTP schema: the shop's PostgreSQL database, captured by Debezium.
--
-- Applied by `streamforge cdc workload --init` (and by the tests) to a fresh database; on
-- Cloud SQL run it once with psql. Every table has updated_at maintained by a trigger and
-- REPLICA IDENTITY FULL, so update and delete events carry the whole previous row.
-- The replica tables of the warehouse take their columns from this file
-- (streamforge/cdc/tables.py reads the CREATE TABLE statements): keep one column per line.

CREATE OR REPLACE FUNCTION set_updated_at() RETURNS trigger AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TABLE products (
    id              bigserial PRIMARY KEY,
    sku             text NOT NULL UNIQUE,
    name            text NOT NULL,
    category        text NOT NULL,
    subcategory     text,
    brand           text,
    price           numeric(12,2) NOT NULL CHECK (price >= 0),
    original_price  numeric(12,2) CHECK (original_price >= 0),
    stock_quantity  integer NOT NULL DEFAULT 0 CHECK (stock_quantity >= 0),
    is_active       boolean NOT NULL DEFAULT true,
    seller_id       bigint,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE customers (
    id              bigserial PRIMARY KEY,
    external_id     text NOT NULL UNIQUE,
    email           text NOT NULL UNIQUE,
    full_name       text NOT NULL,
    country         text NOT NULL,
    city            text,
    loyalty_tier    text NOT NULL DEFAULT 'standard',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE SEQUENCE order_numbers;

CREATE TABLE orders (
    id              bigserial PRIMARY KEY,
    order_number    text NOT NULL UNIQUE DEFAULT ('SO-' || lpad(nextval('order_numbers')::text, 8, '0')),
    customer_id     bigint NOT NULL REFERENCES customers (id),
    order_status    text NOT NULL DEFAULT 'PENDING'
                    CHECK (order_status IN ('PENDING', 'PAID', 'SHIPPED', 'DELIVERED', 'CANCELLED', 'REFUNDED')),
    total_amount    numeric(12,2) NOT NULL CHECK (total_amount >= 0),
    discount_amount numeric(12,2) NOT NULL DEFAULT 0 CHECK (discount_amount >= 0),
    shipping_amount numeric(12,2) NOT NULL DEFAULT 0 CHECK (shipping_amount >= 0),
    payment_method  text NOT NULL,
    shipping_city   text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE order_items (
    id              bigserial PRIMARY KEY,
    order_id        bigint NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    product_id      bigint NOT NULL REFERENCES products (id),
    quantity        integer NOT NULL CHECK (quantity > 0),
    unit_price      numeric(12,2) NOT NULL CHECK (unit_price >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE inventory_movements (
    id              bigserial PRIMARY KEY,
    product_id      bigint NOT NULL REFERENCES products (id),
    change_quantity integer NOT NULL,
    reason          text NOT NULL CHECK (reason IN ('RESTOCK', 'SALE', 'RETURN', 'ADJUSTMENT')),
    reference       text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX order_items_order_id ON order_items (order_id);
CREATE INDEX orders_customer_id ON orders (customer_id);
CREATE INDEX inventory_movements_product_id ON inventory_movements (product_id);

CREATE TRIGGER products_updated_at BEFORE UPDATE ON products FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER customers_updated_at BEFORE UPDATE ON customers FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER orders_updated_at BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER order_items_updated_at BEFORE UPDATE ON order_items FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER inventory_movements_updated_at BEFORE UPDATE ON inventory_movements
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

ALTER TABLE products REPLICA IDENTITY FULL;
ALTER TABLE customers REPLICA IDENTITY FULL;
ALTER TABLE orders REPLICA IDENTITY FULL;
ALTER TABLE order_items REPLICA IDENTITY FULL;
ALTER TABLE inventory_movements REPLICA IDENTITY FULL;
