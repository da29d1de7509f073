-- The transition table (orchestrator.transition_allowed), exhaustively, and the update trigger
-- that applies it. orchestrator/domain/transitions.py holds the same table in Python.
begin;
create extension if not exists pgtap with schema extensions;
select plan(8);

select set_eq(
  $$
    select a.actor, f.status as from_status, t.status as to_status, r.reason
    from (values ('caller'), ('callee'), ('system'), ('operator'), ('stranger')) a (actor)
    cross join (values ('ringing'), ('accepted'), ('ended')) f (status)
    cross join (values ('ringing'), ('accepted'), ('ended')) t (status)
    cross join (values
      (null::text), ('completed'), ('declined'), ('cancelled'), ('missed'), ('busy'),
      ('unreachable'), ('failed'), ('max_duration'), ('glare'), ('connection_lost')
    ) r (reason)
    where orchestrator.transition_allowed(a.actor, f.status, t.status, r.reason)
  $$,
  $$
    select v.actor, v.from_status, v.to_status, v.end_reason
    from (values
      ('caller', 'ringing', 'ended', 'cancelled'),
      ('caller', 'accepted', 'ended', 'completed'),
      ('callee', 'ringing', 'accepted', null),
      ('callee', 'ringing', 'ended', 'declined'),
      ('callee', 'ringing', 'ended', 'busy'),
      ('callee', 'accepted', 'ended', 'completed')
    ) v (actor, from_status, to_status, end_reason)
    union all
    select w.actor, v.from_status, v.to_status, v.end_reason
    from (values ('system'), ('operator')) w (actor)
    cross join (values
      ('ringing', 'ended', 'missed'),
      ('ringing', 'ended', 'busy'),
      ('ringing', 'ended', 'unreachable'),
      ('ringing', 'ended', 'failed'),
      ('ringing', 'ended', 'glare'),
      ('ringing', 'accepted', null),
      ('accepted', 'ended', 'max_duration'),
      ('accepted', 'ended', 'failed'),
      ('accepted', 'ended', 'completed'),
      ('accepted', 'ended', 'connection_lost')
    ) v (from_status, to_status, end_reason)
  $$,
  'transition_allowed is exactly the contract''s table (ended is final; operator = system)'
);

select ok(
  orchestrator.transition_allowed('system', 'accepted', 'ended', 'connection_lost'),
  'the system may end an accepted call connection_lost'
);
select ok(
  not orchestrator.transition_allowed('callee', 'accepted', 'ended', 'connection_lost'),
  'a participant may not end a call connection_lost'
);

-- The trigger applies the table. Two users and an accepted call.
insert into auth.users (id, email) values
  ('a0000000-0000-4000-8000-00000000000a', 'pgtap-caller@example.test'),
  ('b0000000-0000-4000-8000-00000000000b', 'pgtap-callee@example.test');
insert into public.calls (id, caller_id, callee_id)
values ('c0000000-0000-4000-8000-000000000001',
        'a0000000-0000-4000-8000-00000000000a', 'b0000000-0000-4000-8000-00000000000b');

set local "request.jwt.claims" = '{"sub": "a0000000-0000-4000-8000-00000000000a", "role": "authenticated"}';
set local role authenticated;
select throws_ok(
  $$ update public.calls set status = 'accepted'
     where id = 'c0000000-0000-4000-8000-000000000001' $$,
  'CA001', null, 'the caller may not accept their own call'
);
reset role;

set local "request.jwt.claims" = '{"sub": "b0000000-0000-4000-8000-00000000000b", "role": "authenticated"}';
set local role authenticated;
select lives_ok(
  $$ update public.calls set status = 'accepted'
     where id = 'c0000000-0000-4000-8000-000000000001' $$,
  'the callee accepts'
);
select throws_ok(
  $$ update public.calls set status = 'ended', end_reason = 'connection_lost'
     where id = 'c0000000-0000-4000-8000-000000000001' $$,
  'CA001', null, 'the callee may not end the call connection_lost'
);
reset role;

-- The owner connection is the system (the worker).
select lives_ok(
  $$ update public.calls set status = 'ended', end_reason = 'connection_lost'
     where id = 'c0000000-0000-4000-8000-000000000001' $$,
  'the system ends the call connection_lost'
);
select throws_ok(
  $$ update public.calls set status = 'accepted'
     where id = 'c0000000-0000-4000-8000-000000000001' $$,
  'CA003', null, 'an ended call can no longer change'
);

select finish();
rollback;
