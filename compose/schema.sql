CREATE TABLE public.items (id int PRIMARY KEY, v text NOT NULL, n int8);
