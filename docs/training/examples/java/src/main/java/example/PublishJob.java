// Publish one elevator call job to kone-dispatch (docs/job-format.md), the way an integrator's
// application would: msgpack body, persistent, messageId = job_id, mandatory, publisher
// confirms. The same settings as ../python/publish_job.py (environment, dev-stack defaults).
// Prints the job_id; exit 1 when the broker does not confirm it (publish again, SAME job_id).
package example;

import com.rabbitmq.client.AMQP;
import com.rabbitmq.client.Channel;
import com.rabbitmq.client.Connection;
import com.rabbitmq.client.ConnectionFactory;
import java.io.FileInputStream;
import java.io.InputStream;
import java.security.KeyStore;
import java.security.cert.CertificateFactory;
import java.util.UUID;
import java.util.concurrent.atomic.AtomicBoolean;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;
import org.msgpack.core.MessageBufferPacker;
import org.msgpack.core.MessagePack;

public final class PublishJob {
    private static String env(String name, String dflt) {
        String v = System.getenv(name);
        return v == null || v.isEmpty() ? dflt : v;
    }

    /** The broker's certificate verified against the CA file only (the dev CA). */
    private static SSLContext tls(String caFile) throws Exception {
        KeyStore ks = KeyStore.getInstance(KeyStore.getDefaultType());
        ks.load(null, null);
        try (InputStream in = new FileInputStream(caFile)) {
            ks.setCertificateEntry("ca", CertificateFactory.getInstance("X.509").generateCertificate(in));
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(ks);
        SSLContext ctx = SSLContext.getInstance("TLSv1.3");
        ctx.init(null, tmf.getTrustManagers(), null);
        return ctx;
    }

    public static void main(String[] args) throws Exception {
        long now = System.currentTimeMillis(); // a long: packed as a msgpack integer
        String jobId = "java-" + UUID.randomUUID();
        MessageBufferPacker p = MessagePack.newDefaultBufferPacker();
        p.packMapHeader(10);
        p.packString("v").packInt(1);
        p.packString("job_id").packString(jobId);
        p.packString("op").packString("call");
        p.packString("building_id").packString(env("BUILDING", "building:9990000951"));
        p.packString("created_at").packLong(now);
        p.packString("deadline").packLong(now + 30_000);
        p.packString("area").packLong(Long.parseLong(env("AREA", "3000")));
        p.packString("action").packInt(2);
        p.packString("destination").packLong(Long.parseLong(env("DESTINATION", "5000")));
        p.packString("trace_id").packString("training-java");
        byte[] body = p.toByteArray();

        ConnectionFactory f = new ConnectionFactory();
        f.setHost(env("KD_AMQP_HOST", "127.0.0.1"));
        f.setPort(Integer.parseInt(env("KD_AMQP_PORT", "5671")));
        f.setUsername(env("AMQP_USER", "guest"));
        f.setPassword(env("AMQP_PASSWORD", "guest"));
        f.useSslProtocol(tls(env("KD_AMQP_CA_FILE", ".dev/tls/ca.pem")));
        f.enableHostnameVerification();
        try (Connection conn = f.newConnection(); Channel ch = conn.createChannel()) {
            AtomicBoolean returned = new AtomicBoolean(false);
            ch.addReturnListener(r -> returned.set(true)); // mandatory and no queue bound
            ch.confirmSelect();
            AMQP.BasicProperties props = new AMQP.BasicProperties.Builder()
                    .contentType("application/msgpack")
                    .deliveryMode(2) // persistent
                    .messageId(jobId)
                    .build();
            ch.basicPublish(env("KD_AMQP_EXCHANGE", "kone.calls"), env("KD_AMQP_ROUTING_KEY", "kone.calls"),
                    true, props, body);
            try {
                ch.waitForConfirmsOrDie(10_000); // throws on a nack or a timeout
            } catch (Exception e) {
                System.err.println("not confirmed (" + e + "): publish " + jobId + " again");
                System.exit(1);
            }
            if (returned.get()) {
                System.err.println("not confirmed (unroutable): publish " + jobId + " again");
                System.exit(1);
            }
        }
        System.out.println(jobId);
    }
}
